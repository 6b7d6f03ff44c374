"""The topology's plumbing (devstack/cluster.py) without starting it: what `adplane dev --topology
cluster` refuses, the ports every node shares, and what each process is told. The topology itself
runs in tests/e2e/test_cluster.py."""

import socket
from pathlib import Path

from devstack.cluster import NODES, SERVER_PROCESSES_PER_NODE, ClusterPorts, cluster_refusal, envoy_env, node_env
from devstack.embedded import free_port_block
from server.config import Settings
from tests.edge.test_envoy_config import _endpoints


def test_the_topology_starts_a_data_tier_of_its_own() -> None:
    assert cluster_refusal(Settings(database_url="", redis_url=""), tls=False) is None
    refused = cluster_refusal(Settings(database_url="postgresql://db/adplane", redis_url=""), tls=False)
    assert refused is not None
    assert "DATABASE_URL" in refused
    assert cluster_refusal(Settings(database_url="", redis_sentinels="127.0.0.1:26379"), tls=False) is not None
    refused = cluster_refusal(Settings(database_url="", redis_url=""), tls=True)
    assert refused is not None
    assert "TLS" in refused


def test_ports_are_free_on_every_node_and_a_taken_one_moves_the_block() -> None:
    preferred = free_port_block(SERVER_PROCESSES_PER_NODE + 4)
    ports = ClusterPorts.pick(preferred)
    assert ports.grpc == preferred
    # The metrics ports come after the server processes' own ports (GRPC_PORT + 1 + i).
    assert ports.server_metrics == preferred + SERVER_PROCESSES_PER_NODE + 1
    with socket.socket() as taken:
        taken.bind((NODES[1].address, preferred + 1))  # one server process's port, on one node only
        taken.listen()
        moved = ClusterPorts.pick(preferred)
    assert moved.grpc != preferred


def test_each_node_listens_on_its_own_address_and_envoy_reaches_every_process(tmp_path: Path) -> None:
    ports = ClusterPorts(grpc=40000, server_metrics=40003, worker_metrics=40004, scheduler_metrics=40005)
    base = {"DATABASE_URL": "postgresql+asyncpg://bouncer/adplane"}
    for node in NODES:
        env = node_env(base, node, ports, tmp_path)
        assert (env["GRPC_HOST"], env["METRICS_HOST"], env["GRPC_PORT"]) == (node.address, node.address, "40000")
        assert env["DATABASE_URL"] == base["DATABASE_URL"]
        # Workers and schedulers of different nodes keep their heartbeats apart.
        assert Path(env["ADPLANE_HEARTBEAT_DIR"]) == tmp_path / node.name
    envoy = Settings.model_validate({name.lower(): value for name, value in envoy_env({}, ports).items()})
    endpoints = {(endpoint["address"], endpoint["port_value"]) for endpoint in _endpoints(envoy)}
    assert endpoints == {(node.address, 40001 + i) for node in NODES for i in range(SERVER_PROCESSES_PER_NODE)}
