"""Run by tests/e2e/sdk/test_python_client.py with the interpreter of an empty venv that has only the
adplane-client wheel installed: the client against the real stack, as its users would call it.

argv: gRPC target, superuser email, password.
"""

import asyncio
import datetime as dt
import importlib.util
import sys
import uuid
from collections.abc import Callable

import grpc
from google.protobuf import timestamp_pb2

from adplane.v1 import api_key_service_pb2, request_service_pb2, workspace_pb2, workspace_service_pb2
from adplane.v1.api_key_service_pb2_grpc import ApiKeyServiceStub
from adplane.v1.request_service_pb2_grpc import RequestServiceStub
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from adplane_client import (
    AdplaneError,
    ApiKeyCredentials,
    Reload,
    TokenCredentials,
    apages,
    awatch,
    connect,
    connect_async,
    pages,
)


def failure(call: Callable[[], object]) -> AdplaneError:
    try:
        call()
    except AdplaneError as error:
        return error
    raise AssertionError("the call succeeded")


def main(target: str, email: str, password: str) -> None:
    # Nothing of the server came along.
    for server_only in ("sqlalchemy", "taskiq", "asyncpg", "server"):
        assert importlib.util.find_spec(server_only) is None, server_only

    refreshed: list[str] = []
    credentials = TokenCredentials.login(target, email, password)
    credentials._on_refresh = lambda tokens: refreshed.append(tokens.access_token)
    prefix = uuid.uuid4().hex[:8]
    with connect(target, credentials) as channel:
        workspaces = WorkspaceServiceStub(channel)
        created = [
            workspaces.CreateWorkspace(
                workspace_service_pb2.CreateWorkspaceRequest(workspace=workspace_pb2.Workspace(name=f"{prefix}-{i}"))
            ).workspace
            for i in range(5)
        ]
        listed = [
            w.id
            for w in pages(
                workspaces.ListWorkspaces, workspace_service_pb2.ListWorkspacesRequest(page_size=2), "workspaces"
            )
        ]
        assert [w.id for w in created] == [i for i in listed if i in {w.id for w in created}]

        # A validation error, decoded.
        error = failure(
            lambda: workspaces.CreateWorkspace(
                workspace_service_pb2.CreateWorkspaceRequest(workspace=workspace_pb2.Workspace(name=""))
            )
        )
        assert error.status is grpc.StatusCode.INVALID_ARGUMENT, error
        assert error.domain == "adplane"
        assert any(v.field.endswith("name") for v in error.field_violations), error.field_violations

        # NOT_FOUND with its reason.
        error = failure(
            lambda: workspaces.GetWorkspace(workspace_service_pb2.GetWorkspaceRequest(workspace_id=str(uuid.uuid4())))
        )
        assert (error.status, error.reason) == (grpc.StatusCode.NOT_FOUND, "WORKSPACE_NOT_FOUND"), error

        # The access token is about to expire: the next call refreshes it first.
        tokens = credentials.tokens
        stale = type(tokens)()
        stale.CopyFrom(tokens)
        stale.access_token_expire_time.CopyFrom(
            timestamp_pb2.Timestamp(seconds=int(dt.datetime.now(dt.UTC).timestamp()))
        )
        credentials._tokens = stale
        workspaces.GetWorkspace(workspace_service_pb2.GetWorkspaceRequest(workspace_id=created[0].id))
        # (The new access token can equal the old one when both were issued in the same second.)
        assert refreshed == [credentials.tokens.access_token]
        assert credentials.tokens.refresh_token != tokens.refresh_token
        assert credentials.tokens.access_token_expire_time.seconds > stale.access_token_expire_time.seconds

        key = ApiKeyServiceStub(channel).CreateApiKey(
            api_key_service_pb2.CreateApiKeyRequest(
                api_key=api_key_service_pb2.ApiKey(name=f"{prefix}-key", role_names=["administrator"])
            )
        )

    # An API key caller, over asyncio.
    async def with_api_key() -> list[str]:
        async with connect_async(target, ApiKeyCredentials(key.secret)) as channel:
            stub = WorkspaceServiceStub(channel)
            request = workspace_service_pb2.ListWorkspacesRequest(page_size=3)
            names = [w.name async for w in apages(stub.ListWorkspaces, request, "workspaces")]
            try:
                await stub.GetWorkspace(workspace_service_pb2.GetWorkspaceRequest(workspace_id="not-a-uuid"))
            except AdplaneError as caught:
                error = caught
            else:
                raise AssertionError("a malformed id was accepted")
            assert error.status is grpc.StatusCode.INVALID_ARGUMENT, error
            assert error.field_violations[0].field == "workspace_id", error

            # A watch from an expired position: the helper says to reload, then the snapshot comes.
            expired = request_service_pb2.WatchWorkspaceRequestsRequest(workspace_id=created[0].id, resume_token="1-0")
            events = awatch(RequestServiceStub(channel).WatchWorkspaceRequests, expired)
            reload, snapshot = await anext(events), await anext(events)
            await events.aclose()  # type: ignore[attr-defined]
            assert isinstance(reload, Reload), reload
            assert reload.cause.reason == "RESUME_TOKEN_EXPIRED", reload
            assert not isinstance(snapshot, Reload), snapshot
            assert snapshot.snapshot.complete, snapshot
            return names

    names = asyncio.run(with_api_key())
    assert {w.name for w in created} <= set(names)
    print("python client: ok")


if __name__ == "__main__":
    main(*sys.argv[1:4])
