"""`adplane dev --topology cluster` (`make cluster`): what a small production looks like, on one machine.

Two nodes, each on a loopback address of its own (NODE_ADDRESSES) and with the same ports, as
separate hosts would have: server processes (`serve --workers 2`, one Envoy endpoint each), a worker
and a scheduler. Envoy on 127.0.0.1 balances over both nodes. Below them the data tier of
`start_data_tier`: PostgreSQL primary + streaming replica, each behind PgBouncer (transaction
pooling), Redis primary + replica + three sentinels.

`Cluster` starts and owns the processes; the supervisor of `adplane dev` restarts what dies, and the
failover drill (tests/e2e/test_cluster.py) kills a whole node, then the Redis primary, instead; its
rolling restart stops and starts one node after the other (`stop_node`, `start_node`), as a deploy does.
"""

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from devstack.children import Child, stop_children
from devstack.embedded import EmbeddedPostgres, free_port_block, is_port_free, start_postgres, start_replica
from devstack.pgbouncer import PgBouncer, start_pgbouncer
from devstack.sentinel import SentinelGroup
from server.config import Settings
from server.taskqueue.heartbeat import heartbeat_path

# 127.0.0.0/8 is loopback on Linux as a whole: every address in it is this machine.
NODE_ADDRESSES = ("127.0.0.2", "127.0.0.3")
SERVER_PROCESSES_PER_NODE = 2
# `adplane` commands every node runs.
NODE_COMMANDS: dict[str, list[str]] = {
    "server": ["serve"],
    "worker": ["worker"],
    "scheduler": ["scheduler"],
}


@dataclass(frozen=True)
class Node:
    name: str
    address: str


NODES = tuple(Node(f"node-{chr(ord('a') + i)}", address) for i, address in enumerate(NODE_ADDRESSES))


def nodes_reachable() -> bool:
    """Whether processes can listen on the nodes' addresses (Linux routes all of 127/8 to lo;
    macOS needs `sudo ifconfig lo0 alias 127.0.0.2 up` and the same for 127.0.0.3 first)."""
    return all(is_port_free(0, node.address) for node in NODES)


@dataclass(frozen=True)
class ClusterPorts:
    """The ports every node uses (the same on each, as on separate hosts)."""

    grpc: int
    server_metrics: int
    worker_metrics: int
    scheduler_metrics: int

    @classmethod
    def pick(cls, preferred_grpc: int | None = None) -> "ClusterPorts":
        """`preferred_grpc` and the ports after it when free on every node, else free ones."""
        size = SERVER_PROCESSES_PER_NODE + 4
        grpc = preferred_grpc
        while grpc is None or not all(_port_free_everywhere(p) for p in range(grpc, grpc + size)):
            grpc = free_port_block(size)
        metrics = grpc + SERVER_PROCESSES_PER_NODE + 1
        return cls(grpc=grpc, server_metrics=metrics, worker_metrics=metrics + 1, scheduler_metrics=metrics + 2)


def _port_free_everywhere(port: int) -> bool:
    return is_port_free(port) and all(is_port_free(port, node.address) for node in NODES)


def node_env(env: dict[str, str], node: Node, ports: ClusterPorts, data_dir: Path) -> dict[str, str]:
    """The environment of a node's processes: `env` (the data tier, the fakes) bound to its address."""
    heartbeats = data_dir / node.name
    heartbeats.mkdir(parents=True, exist_ok=True)
    return env | {
        "GRPC_HOST": node.address,
        "GRPC_PORT": str(ports.grpc),
        "GRPC_WORKERS": str(SERVER_PROCESSES_PER_NODE),
        "METRICS_HOST": node.address,
        "SERVER_METRICS_PORT": str(ports.server_metrics),
        "WORKER_METRICS_PORT": str(ports.worker_metrics),
        "SCHEDULER_METRICS_PORT": str(ports.scheduler_metrics),
        "ADPLANE_HEARTBEAT_DIR": str(heartbeats),
        "ADPLANE_NODE": node.name,
    }


def envoy_env(env: dict[str, str], ports: ClusterPorts) -> dict[str, str]:
    """Envoy in front of every server process of every node."""
    return env | {
        "GRPC_UPSTREAM_HOST": ",".join(node.address for node in NODES),
        "GRPC_PORT": str(ports.grpc),
        "GRPC_WORKERS": str(SERVER_PROCESSES_PER_NODE),
    }


def spawn(arguments: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """An `adplane` command in a process group of its own (a node is killed group by group)."""
    adplane = Path(sys.executable).parent / "adplane"
    output = log.open("ab") if log else None
    return subprocess.Popen(
        [str(adplane), *arguments],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        process_group=0,
    )


@dataclass
class Cluster:
    """The nodes and Envoy of the topology, over a data tier already started (its settings in `env`)."""

    env: dict[str, str]
    ports: ClusterPorts
    data_dir: Path
    logs: Path | None = None
    children: dict[str, Child] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for node in NODES:
            for kind, arguments in NODE_COMMANDS.items():
                name = f"{node.name} {kind}"
                self.children[name] = Child(name, partial(spawn, arguments, self.node_env(node), self._log(name)))
        envoy = partial(spawn, ["envoy"], envoy_env(self.env, self.ports), self._log("envoy"))
        self.children["envoy"] = Child("envoy", envoy)

    def describe(self) -> str:
        """The banner's lines about the nodes."""
        lines = [
            f"\n  {node.name:<12} {node.address}: gRPC {self.ports.grpc} (+{SERVER_PROCESSES_PER_NODE} processes), "
            f"worker, scheduler; metrics {self.ports.server_metrics}-{self.ports.scheduler_metrics}"
            for node in NODES
        ]
        return "".join(lines) + f"\n  logs         {self.logs}" if self.logs else "".join(lines)

    def node_env(self, node: Node) -> dict[str, str]:
        return node_env(self.env, node, self.ports, self.data_dir)

    def _log(self, name: str) -> Path | None:
        return self.logs / f"{name.replace(' ', '-')}.log" if self.logs else None

    def launch(self, now: float) -> None:
        for child in self.children.values():
            child.launch(now)

    def node_children(self, node: Node) -> list[Child]:
        return [child for name, child in self.children.items() if name.startswith(f"{node.name} ")]

    def kill_node(self, node: Node) -> None:
        """SIGKILL every process of `node`, children of its server included (as a host that dies)."""
        for child in self.node_children(node):
            if child.process is not None and child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()

    def stop_node(self, node: Node, *, timeout: float) -> None:
        """SIGTERM every process group of `node` (each drains first) and wait until they have exited.

        One still running after `timeout` seconds is SIGKILLed, and TimeoutError names it."""
        running = [c for c in self.node_children(node) if c.process is not None and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        late = []
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                late.append(child.name)
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
        if late:
            raise TimeoutError(f"{', '.join(late)} did not stop within {timeout:g} s of SIGTERM")

    def start_node(self, node: Node) -> None:
        """Start the processes of `node` that are not running (all of them after `stop_node` or `kill_node`)."""
        for child in self.node_children(node):
            if child.process is None or child.process.poll() is not None:
                child.launch(time.monotonic())

    def background_beating(self, node: Node, *, since: float) -> bool:
        """Whether the worker and the scheduler of `node` touched their heartbeat files after `since`
        (a `time.time()`): they run (a stopped one removes its file)."""
        directory = Path(self.node_env(node)["ADPLANE_HEARTBEAT_DIR"])
        for kind in ("worker", "scheduler"):
            try:
                if (directory / heartbeat_path(kind).name).stat().st_mtime < since:
                    return False
            except FileNotFoundError:
                return False
        return True

    def stop(self, *, timeout: float) -> None:
        stop_children(list(self.children.values()), signal.SIGTERM, timeout=timeout)


@dataclass
class DataTier:
    """PostgreSQL behind PgBouncer, Redis behind Sentinel: what every node's processes reach."""

    postgres: EmbeddedPostgres
    replica: EmbeddedPostgres
    pgbouncer: PgBouncer
    redis: SentinelGroup
    env: dict[str, str]

    def primary_up(self) -> bool:
        """Whether the sentinels name a Redis primary that answers."""
        address = self.redis.primary_address()
        return address is not None and any(n.address == address and n.ping() for n in self.redis.data_nodes)


def cluster_refusal(settings: Settings, *, tls: bool) -> str | None:
    """Why the topology cannot start with these settings (None: it can)."""
    if settings.database_url or settings.redis_configured:
        return "--topology cluster starts a data tier of its own: unset DATABASE_URL, REDIS_URL and REDIS_SENTINELS"
    if tls:
        return "--topology cluster runs without TLS (the local CA's certificates name 127.0.0.1 only)"
    if not nodes_reachable():
        return f"cannot listen on {', '.join(NODE_ADDRESSES)} (on macOS: sudo ifconfig lo0 alias 127.0.0.2 up, and .3)"
    return None


def start_data_tier(directory: Path, stack: ExitStack, *, database: str = "adplane") -> DataTier:
    """The topology's data tier in `directory` (kept between runs), stopped when `stack` closes.

    The environment it returns points the processes at PgBouncer in transaction mode
    (DATABASE_POOLER=pgbouncer), the hot reads at the streaming replica through a PgBouncer of its
    own (DATABASE_READ_URL), PostgreSQL itself for LISTEN and migrations (DATABASE_DIRECT_URL), and
    the sentinels (REDIS_SENTINELS) instead of a Redis address.
    """
    postgres = stack.enter_context(start_postgres(directory / "postgres", ephemeral=False))
    direct = postgres.create_database(database)  # before the replica is made: it copies the primary
    replica = stack.enter_context(start_replica(postgres, directory / "replica"))
    pgbouncer = stack.enter_context(start_pgbouncer(direct))
    replica_bouncer = stack.enter_context(start_pgbouncer(replica.url_for(database)))
    redis = stack.enter_context(SentinelGroup(directory / "redis"))
    env = {
        "DATABASE_URL": pgbouncer.url_for(direct),
        "DATABASE_POOLER": "pgbouncer",
        "DATABASE_DIRECT_URL": direct,
        "DATABASE_READ_URL": replica_bouncer.url_for(replica.url_for(database)),
        "REDIS_URL": "",
        "REDIS_SENTINELS": redis.sentinels,
        "REDIS_SENTINEL_SERVICE": redis.service,
    }
    return DataTier(postgres=postgres, replica=replica, pgbouncer=pgbouncer, redis=redis, env=env)
