"""SIGTERM drains: health turns NOT_SERVING at once, an in-flight RPC finishes, the exit code is 0."""

import asyncio
import signal
import uuid
from functools import partial
from pathlib import Path

import grpc
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from adplane.v1 import workspace_pb2
from adplane.v1 import workspace_service_pb2 as pb
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from server.composition import Infrastructure
from server.config import Settings
from tests.callers import Caller
from tests.e2e.conftest import start_server
from tests.waits import blocked_on_a_lock, eventually


async def _refuses_calls(target: str) -> bool:
    """Whether a new call to `target` is refused (a health check on a channel of its own)."""
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.aio.AioRpcError as error:
            return error.code() is grpc.StatusCode.UNAVAILABLE
    return False


async def test_sigterm_during_a_slow_rpc_lets_it_finish(
    settings: Settings, infrastructure: Infrastructure, admin: Caller, tmp_path: Path
) -> None:
    server = start_server(settings, tmp_path, GRPC_SHUTDOWN_GRACE="30")
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = WorkspaceServiceStub(channel)
            workspace = (
                await stub.CreateWorkspace(
                    pb.CreateWorkspaceRequest(workspace=workspace_pb2.Workspace(name="Slow")), metadata=admin.metadata
                )
            ).workspace
            health = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            assert (await health.read()).status == health_pb2.HealthCheckResponse.SERVING

            # Hold the row lock so the update below blocks inside the server: a slow RPC.
            async with infrastructure.engine.connect() as blocker:
                transaction = await blocker.begin()
                await blocker.execute(
                    text("SELECT 1 FROM workspaces WHERE id = :id FOR UPDATE"), {"id": uuid.UUID(workspace.id)}
                )
                update = asyncio.ensure_future(
                    stub.UpdateWorkspace(
                        pb.UpdateWorkspaceRequest(
                            workspace_id=workspace.id,
                            workspace=workspace_pb2.Workspace(name="Finished"),
                            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
                        ),
                        metadata=admin.metadata,
                    )
                )
                await blocked_on_a_lock(infrastructure)  # the update waits inside the server
                assert not update.done()

                server.process.send_signal(signal.SIGTERM)
                assert (await health.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
                health.cancel()
                # Refusing new calls, the server is in its stop, waiting for the calls in flight.
                await eventually(partial(_refuses_calls, server.target), within=10, what="the server's stop")
                assert server.process.poll() is None, "the server quit with an RPC in flight"
                await transaction.commit()

            reply = await asyncio.wait_for(update, timeout=10)
            assert reply.workspace.name == "Finished"
        assert await asyncio.to_thread(server.process.wait, 20) == 0
    finally:
        server.stop()
