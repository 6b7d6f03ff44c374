"""Per-caller rate limits on the real stack: two server processes (`serve --workers 2`) sharing the
buckets in Redis, behind Envoy.

Reads are limited to a burst of `BURST` and one more token every `1 / PER_SECOND` seconds, so within
the few seconds a test takes a caller gets the burst and at most a token or two more: a caller over
the limit stays refused long enough to be seen, and a limit kept per process would let twice the
burst through."""

import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from adplane.v1 import workspace_service_pb2 as pb
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from devstack.embedded import free_port
from server.api_keys.schemas import ApiKeyCreateRequestSchema
from server.auth.principal import Principal, PrincipalKind
from server.composition import Infrastructure
from server.config import Settings
from tests.callers import make_caller
from tests.e2e.conftest import ServerProcess, start_envoy, start_server_processes, wait_until
from tests.e2e.test_load_spread import _healthy_endpoints

WORKERS = 2
PER_SECOND = 0.2
BURST = 6
LIMITS = {
    "RATE_LIMIT_READS_PER_SECOND": str(PER_SECOND),
    "RATE_LIMIT_READS_BURST": str(BURST),
    "RATE_LIMIT_WRITES_PER_SECOND": "0",
    "RATE_LIMIT_STREAMS_PER_SECOND": "0",
}
type Metadata = tuple[tuple[str, str], ...]


@dataclass
class LimitedStack:
    server: ServerProcess
    envoy: ServerProcess

    @property
    def process_targets(self) -> list[str]:
        """Each server process on its own port."""
        return [f"127.0.0.1:{self.server.port + 1 + i}" for i in range(WORKERS)]

    @property
    def envoy_target(self) -> str:
        return f"127.0.0.1:{self.envoy.port}"


@pytest.fixture(scope="module")
def limited(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedStack]:
    tmp = tmp_path_factory.mktemp("rate-limits")
    server = start_server_processes(settings, tmp, WORKERS, **LIMITS)
    admin = free_port()
    envoy = start_envoy(
        settings,
        tmp,
        upstream_port=None,
        GRPC_WORKERS=str(WORKERS),
        GRPC_PORT=str(server.port),
        ENVOY_ADMIN_PORT=str(admin),
    )
    try:
        wait_until(
            lambda: _healthy_endpoints(admin) == WORKERS, what="healthy endpoints", process=envoy.process, log=envoy.log
        )
        yield LimitedStack(server=server, envoy=envoy)
    finally:
        envoy.stop()
        assert server.stop() == 0, server.log.read_text()[-4000:]


async def staff_user(infrastructure: Infrastructure) -> Metadata:
    return (await make_caller(infrastructure, roles=["staff"])).metadata


async def staff_api_key(infrastructure: Infrastructure) -> Metadata:
    async with infrastructure.unit_of_work() as uow:
        created = await uow.api_keys.create_api_key(
            ApiKeyCreateRequestSchema(name=f"integration {uuid.uuid4().hex[:6]}", role_names=["staff"]),
            actor=Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4()),
        )
    assert created.secret is not None
    return (("x-api-key", created.secret),)


@pytest.fixture
async def channel(limited: LimitedStack) -> AsyncIterator[grpc.aio.Channel]:
    """Native gRPC through Envoy, which spreads the calls over both processes."""
    async with grpc.aio.insecure_channel(limited.envoy_target) as channel:
        yield channel


async def list_workspaces(channel: grpc.aio.Channel, metadata: Metadata) -> grpc.aio.AioRpcError | None:
    """None when the read was served, its error otherwise."""
    try:
        await WorkspaceServiceStub(channel).ListWorkspaces(pb.ListWorkspacesRequest(), metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error
    return None


def refusal(error: grpc.aio.AioRpcError | None) -> tuple[str, float]:
    """The ErrorInfo reason and the RetryInfo delay (seconds) of a refused call."""
    assert error is not None, "the call was served"
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
    status = rpc_status.from_call(error)
    assert status is not None
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    reason, delay = "", -1.0
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay.ToTimedelta().total_seconds()
    return reason, delay


async def test_a_caller_over_its_limit_is_refused_while_another_is_served(
    channel: grpc.aio.Channel, infrastructure: Infrastructure
) -> None:
    integration, colleague = await staff_api_key(infrastructure), await staff_user(infrastructure)
    results = [await list_workspaces(channel, integration) for _ in range(BURST + 4)]
    refused = [error for error in results if error is not None]
    # The burst, and at most one token that flowed in meanwhile; then refusals.
    assert BURST + 4 - len(refused) in (BURST, BURST + 1), results
    reason, delay = refusal(refused[-1])
    assert reason == "RATE_LIMITED"
    assert 0 < delay <= 1 / PER_SECOND
    # In the same second: another caller (staff, over the same processes) and the health check.
    assert await list_workspaces(channel, colleague) is None
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    # And the caller is still refused.
    assert refusal(await list_workspaces(channel, integration))[0] == "RATE_LIMITED"


async def test_over_rest_the_refusal_is_429_with_retry_after(
    limited: LimitedStack, infrastructure: Infrastructure
) -> None:
    user = await make_caller(infrastructure, roles=["staff"])
    async with httpx.AsyncClient(base_url=f"http://{limited.envoy_target}", headers=user.headers) as http:
        codes = [(await http.get("/api/workspaces")).status_code for _ in range(BURST + 3)]
        refused = await http.get("/api/workspaces")
    assert codes[:BURST] == [200] * BURST, codes
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["code"] == code_pb2.RESOURCE_EXHAUSTED
    info = next(d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    assert info["reason"] == "RATE_LIMITED"
    assert info["metadata"] == {"method_class": "read"}
    retry = next(d for d in body["details"] if d["@type"].endswith("google.rpc.RetryInfo"))
    delay = float(retry["retry_delay"].removesuffix("s"))
    # Retry-After is the RetryInfo in whole seconds, rounded up.
    assert refused.headers["retry-after"] == str(max(1, math.ceil(delay)))


async def test_the_limit_holds_across_two_server_processes(
    limited: LimitedStack, infrastructure: Infrastructure
) -> None:
    integration = await staff_api_key(infrastructure)
    admitted = dict.fromkeys(limited.process_targets, 0)
    started = time.monotonic()
    channels = [grpc.aio.insecure_channel(target) for target in limited.process_targets]
    try:
        # Alternately to each process, straight to its own port: twice the burst in all.
        for call in range(2 * BURST):
            target, channel = limited.process_targets[call % WORKERS], channels[call % WORKERS]
            admitted[target] += await list_workspaces(channel, integration) is None
    finally:
        for channel in channels:
            await channel.close()
    elapsed = time.monotonic() - started
    # Both processes served the caller, and together no more than the one shared bucket holds
    # (each process keeping a bucket of its own would have served all 2 * BURST calls).
    assert all(admitted.values()), admitted
    assert sum(admitted.values()) <= BURST + math.floor(PER_SECOND * elapsed) + 1, (admitted, elapsed)
