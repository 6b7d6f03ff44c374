"""The end-to-end flows with DATABASE_URL pointing at a real PgBouncer in transaction mode
(DATABASE_POOLER=pgbouncer, DATABASE_DIRECT_URL at PostgreSQL itself): a server and a worker
process sign a member in, take a request, approve it, carry it out on the Graph API simulator, list
it, stream it to a watcher, and see a role change made by another process."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from adplane.v1 import account_service_pb2, auth_service_pb2, request_pb2, request_service_pb2
from adplane.v1.account_service_pb2_grpc import AccountServiceStub
from adplane.v1.auth_service_pb2_grpc import AuthServiceStub
from adplane.v1.request_service_pb2_grpc import RequestServiceStub
from devstack.embedded import start_redis
from devstack.meta_simulator import SimulatorServer
from devstack.meta_simulator.control_client import SimulatorControl
from devstack.pgbouncer import PgBouncer, start_pgbouncer
from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from server.config import Settings
from tests.callers import PASSWORD, Caller, make_caller
from tests.e2e.conftest import ServerProcess, start_server
from tests.e2e.test_watch import next_change, snapshot
from tests.faults.test_worker_faults import META_BUSINESS_ID, TOKEN, Workers, _workspace_and_manager
from tests.waits import eventually

COMPLETED = request_pb2.REQUEST_STATUS_COMPLETED


@dataclass
class PooledStack:
    bouncer: PgBouncer
    server: ServerProcess
    workers: Workers


@pytest.fixture(scope="module")
def bouncer(postgres_server_url: str) -> Iterator[PgBouncer]:
    with start_pgbouncer(postgres_server_url, pool_size=4) as running:
        yield running


@pytest.fixture(scope="module")
def pooled_stack(
    settings: Settings, bouncer: PgBouncer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PooledStack]:
    """A server and a worker whose DATABASE_URL is PgBouncer (a Redis and a Graph API simulator of
    their own)."""
    tmp = tmp_path_factory.mktemp("pgbouncer")
    pooled = settings.model_copy(update={"database_url": bouncer.url_for(settings.database_url)})
    env = {"DATABASE_POOLER": "pgbouncer", "DATABASE_DIRECT_URL": settings.database_url}
    redis = start_redis(tmp / "redis", ephemeral=True)
    with SimulatorServer() as simulator, SimulatorControl(simulator.base_url) as control:
        control.add_business("Pooled Co Platform", business_id=META_BUSINESS_ID, token=TOKEN)
        server = start_server(pooled, tmp, REDIS_URL=redis.url, **env)
        workers = Workers(pooled, redis.url, simulator.base_url, tmp)
        workers.start(**env)
        try:
            yield PooledStack(bouncer=bouncer, server=server, workers=workers)
        finally:
            workers.stop_all()
            assert server.stop() == 0, server.log.read_text()[-4000:]
            redis.stop()


@pytest.fixture
async def channel(pooled_stack: PooledStack) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(pooled_stack.server.target) as channel:
        yield channel


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def sign_in(channel: grpc.aio.Channel, caller: Caller) -> tuple[tuple[str, str]]:
    """Login through the server: the member's own password, checked against PostgreSQL via PgBouncer."""
    reply = await AuthServiceStub(channel).Login(auth_service_pb2.LoginRequest(email=caller.email, password=PASSWORD))
    return bearer(reply.tokens.access_token)


async def test_sign_in_request_approve_complete_list_and_watch_through_pgbouncer(
    pooled_stack: PooledStack, channel: grpc.aio.Channel, infrastructure: Infrastructure, tmp_path: Path
) -> None:
    await pooled_stack.workers.wait_until_listening()
    workspace_id, manager_id = await _workspace_and_manager(infrastructure)
    member = await make_caller(infrastructure, memberships={workspace_id: WorkspaceRole.MEMBER})
    approver = await make_caller(infrastructure, roles=["approver"])
    as_member = await sign_in(channel, member)
    as_approver = await sign_in(channel, approver)
    requests = RequestServiceStub(channel)

    watch: Any = requests.WatchWorkspaceRequests(
        request_service_pb2.WatchWorkspaceRequestsRequest(workspace_id=str(workspace_id)), metadata=as_member
    )
    try:
        assert (await snapshot(watch))[0] == []
        asked = await AccountServiceStub(channel).RequestAccount(
            account_service_pb2.RequestAccountRequest(
                workspace_id=str(workspace_id),
                account=account_service_pb2.AccountDraft(
                    name="Pooled Sale", currency="EUR", timezone="Europe/Berlin", business_manager_id=str(manager_id)
                ),
            ),
            metadata=as_member,
        )
        request_id = asked.request.id
        assert (await next_change(watch)).change.request.id == request_id

        approved = await requests.ApproveRequest(
            request_service_pb2.ApproveRequestRequest(id=request_id), metadata=as_approver
        )
        assert approved.request.status == request_pb2.REQUEST_STATUS_APPROVED

        async def completed() -> bool:
            reply = await requests.GetRequest(
                request_service_pb2.GetRequestRequest(workspace_id=str(workspace_id), id=request_id),
                metadata=as_member,
            )
            return bool(reply.request.status == COMPLETED)

        await eventually(completed, within=60, what="the worker completing the request", every=0.1)
        statuses = [(await next_change(watch, within=10)).change.request.status for _ in range(2)]
        assert statuses == [request_pb2.REQUEST_STATUS_APPROVED, COMPLETED]
    finally:
        watch.cancel()

    listed = await requests.ListWorkspaceRequests(
        request_service_pb2.ListWorkspaceRequestsRequest(workspace_id=str(workspace_id)), metadata=as_member
    )
    assert [(r.id, r.status) for r in listed.requests] == [(request_id, COMPLETED)]
    accounts = await AccountServiceStub(channel).ListAccounts(
        account_service_pb2.ListAccountsRequest(workspace_id=str(workspace_id)), metadata=as_member
    )
    assert [a.name for a in accounts.accounts] == ["Pooled Sale"]


async def test_the_server_sees_a_role_change_committed_elsewhere(
    pooled_stack: PooledStack, channel: grpc.aio.Channel, infrastructure: Infrastructure
) -> None:
    """The server's standing cache hears the notification on its direct connection: a LISTEN
    through PgBouncer would hear nothing once its server connection served another client."""
    approver = await make_caller(infrastructure, roles=["approver"])
    as_approver = await sign_in(channel, approver)
    queue = RequestServiceStub(channel).ListRequests
    for _ in range(3):  # read, then kept in the cache
        await queue(request_service_pb2.ListRequestsRequest(), metadata=as_approver)

    # Another process (this test's) takes the role away, on PostgreSQL directly.
    async with infrastructure.unit_of_work() as uow:
        await uow.users.set_user_roles(approver.user_id, [])

    async def refused() -> bool:
        try:
            await queue(request_service_pb2.ListRequestsRequest(), metadata=as_approver)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.PERMISSION_DENIED:
                raise
            return True
        return False

    await eventually(refused, within=5, what="the server refusing the former approver")
