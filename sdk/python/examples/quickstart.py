"""Quick start against `make run`: sign in over gRPC, create a workspace, list them all.

Run with an interpreter that has the adplane-client wheel installed (see the README):
    python sdk/python/examples/quickstart.py [localhost:50051]
"""

import sys
import time

from adplane.v1 import workspace_pb2, workspace_service_pb2
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from adplane_client import AdplaneError, TokenCredentials, connect, pages

target = sys.argv[1] if len(sys.argv) > 1 else "localhost:50051"
credentials = TokenCredentials.login(target, "admin@example.com", "adplane-dev-admin")
with connect(target, credentials) as channel:
    workspaces = WorkspaceServiceStub(channel)
    try:
        workspaces.CreateWorkspace(
            workspace_service_pb2.CreateWorkspaceRequest(workspace=workspace_pb2.Workspace(name=f"Acme {time.time()}"))
        )
        workspaces.CreateWorkspace(workspace_service_pb2.CreateWorkspaceRequest(workspace=workspace_pb2.Workspace()))
    except AdplaneError as error:
        print("refused:", error.reason, error.field_violations)
    request = workspace_service_pb2.ListWorkspacesRequest(page_size=100)
    for workspace in pages(workspaces.ListWorkspaces, request, "workspaces"):
        print(workspace.id, workspace.name)
