"""One approval followed through its trace: the REST call through Envoy (with the caller's
`traceparent`), the server's RPC and SQL, the outbox row, the relay, the worker's task and its Graph
API calls, as a collector receives them from the real processes (OTLP over HTTP)."""

import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.embedded import EmbeddedRedis, start_redis
from devstack.meta_simulator import SimulatorServer
from devstack.meta_simulator.control_client import SimulatorControl
from server.composition import Infrastructure
from server.config import Settings
from server.requests.models import Request, RequestStatus
from tests.callers import make_caller
from tests.e2e.conftest import ADPLANE, stack_env, start_envoy, start_server
from tests.faults.test_worker_faults import META_BUSINESS_ID, TOKEN, _ask, _workspace_and_manager
from tests.otlp_collector import Collector, ReceivedSpan, otlp_collector
from tests.waits import eventually

APPROVE = "/adplane.v1.RequestService/ApproveRequest"


@pytest.fixture
def collector() -> Iterator[Collector]:
    with otlp_collector() as running:
        yield running


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = start_redis(tmp_path / "redis", ephemeral=True)
    yield server
    server.stop()


def _ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[str]:
    """The names of `span`'s parents, nearest first."""
    by_id = {s.span_id: s for s in spans}
    names, parent = [], by_id.get(span.parent_span_id)
    while parent is not None:
        names.append(parent.name)
        parent = by_id.get(parent.parent_span_id)
    return names


def _statement(span: ReceivedSpan) -> str:
    return str(span.attributes.get("db.statement", ""))


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([ADPLANE, "worker"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def _status(infrastructure: Infrastructure, request_id: uuid.UUID) -> RequestStatus:
    async with infrastructure.unit_of_work() as uow:
        request = await uow.session.get(Request, request_id, populate_existing=True)
        assert request is not None
        return request.status


async def test_an_approval_is_one_trace_from_the_rest_call_to_the_graph_api(
    settings: Settings, infrastructure: Infrastructure, collector: Collector, redis: EmbeddedRedis, tmp_path: Path
) -> None:
    with SimulatorServer() as simulator, SimulatorControl(simulator.base_url) as control:
        control.add_business("Traced Co", business_id=META_BUSINESS_ID, token=TOKEN)
        workspace_id, manager_id = await _workspace_and_manager(infrastructure)
        request_id = await _ask(infrastructure, workspace_id, manager_id, "Traced Account")
        approver = await make_caller(infrastructure, roles=["approver"])

        server = start_server(settings, tmp_path, **collector.env())
        envoy = start_envoy(settings, tmp_path, upstream_port=server.port)
        worker_log = tmp_path / "worker.log"
        worker_env = stack_env(settings, REDIS_URL=redis.url, META_GRAPH_URL=simulator.base_url, **collector.env())
        worker = _start_worker(worker_env, worker_log)
        try:
            trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
            request_header = f"trace-test-{uuid.uuid4().hex[:12]}"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{envoy.port}") as http:
                approved = await http.post(
                    f"/api/requests/{request_id}:approve",
                    headers={
                        **approver.headers,
                        "traceparent": f"00-{trace_id}-{caller_span}-01",
                        "x-request-id": request_header,
                    },
                )
            assert approved.status_code == 200, approved.text

            async def traced_to_the_end() -> bool:
                names = {span.name for span in collector.trace(trace_id)}
                graph_called = any(name.startswith("POST") for name in names)
                completed = await _status(infrastructure, request_id) is RequestStatus.COMPLETED
                return completed and "task requests.carry_out" in names and graph_called

            await eventually(
                traced_to_the_end,
                within=60,
                what="the request completed, its task and Graph API call traced",
                detail=lambda: worker_log.read_text()[-3000:],
            )
            spans = collector.trace(trace_id)

            # Envoy passed the caller's traceparent on: the RPC is the caller's child.
            rpc = next(s for s in spans if s.name == APPROVE)
            assert (rpc.service, rpc.parent_span_id) == ("adplane-server", caller_span)
            # The transaction's SQL, the outbox row among it, under the RPC.
            outbox_insert = [
                s for s in spans if s.service == "adplane-server" and "INSERT INTO outbox_messages" in _statement(s)
            ]
            assert outbox_insert, [(s.service, s.name, s.attributes) for s in spans]
            assert APPROVE in _ancestors(outbox_insert[0], spans)
            # The worker's relay published that row in the same trace, and the task ran under it.
            publish = next(s for s in spans if s.name == "outbox publish request.approved")
            assert (publish.service, publish.parent_span_id) == ("adplane-worker", rpc.span_id)
            task = next(s for s in spans if s.name == "task requests.carry_out")
            assert task.parent_span_id == publish.span_id
            # ...down to the Graph API call that created the account, and the task's own SQL.
            graph = [s for s in spans if s.service == "adplane-worker" and s.name == "POST"]
            assert any("/adaccount" in str(s.attributes.get("url.full", s.attributes.get("http.url"))) for s in graph)
            assert all("task requests.carry_out" in _ancestors(s, spans) for s in graph)
            task_sql = [s for s in spans if s.service == "adplane-worker" and "UPDATE requests" in _statement(s)]
            assert task_sql
            assert all("task requests.carry_out" in _ancestors(s, spans) for s in task_sql)
            # The worker's log lines of the task carry the request id of the approving call.
            assert f'"origin_request_id": "{request_header}"' in worker_log.read_text()
            # Health checks, readiness probes and the relay's polling leave no traces of their own:
            # every SQL statement ran within a call or a task.
            received = collector.received()
            assert not [s for s in received if "grpc.health" in s.name]
            assert all(s.parent_span_id for s in received if _statement(s)), [
                _statement(s) for s in received if _statement(s) and not s.parent_span_id
            ]
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            envoy.stop()
            assert server.stop() == 0
