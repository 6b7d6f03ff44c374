"""Quick start against `make run`: sign in over gRPC, list the workspaces you belong to (ListMyWorkspaces:
any signed-in user may call it; ListWorkspaces is for staff), show how a refused call reads, then
follow the first workspace's requests for a few seconds (a watch that resumes if the connection drops).

Run with an interpreter that has adplane-client installed (see the README):
    python quickstart.py [localhost:50051] [email] [password] [seconds]
"""

import sys
import threading

from adplane.v1 import request_service_pb2, workspace_member_pb2, workspace_pb2, workspace_service_pb2
from adplane.v1.request_service_pb2_grpc import RequestServiceStub
from adplane.v1.workspace_service_pb2_grpc import WorkspaceServiceStub
from adplane_client import AdplaneError, Reload, TokenCredentials, connect, pages, watch

DEFAULTS = ["localhost:50051", "admin@example.com", "adplane-dev-admin", "3"]
target, email, password, seconds = sys.argv[1:5] + DEFAULTS[len(sys.argv[1:5]) :]
credentials = TokenCredentials.login(target, email, password)
with connect(target, credentials) as channel:
    workspaces = WorkspaceServiceStub(channel)
    mine = []
    for membership in pages(
        workspaces.ListMyWorkspaces, workspace_service_pb2.ListMyWorkspacesRequest(page_size=100), "workspaces"
    ):
        role = workspace_member_pb2.WorkspaceRole.Name(membership.role)
        print(f"member of {membership.workspace.name} as {role}")
        mine.append(membership.workspace.id)
    try:
        workspaces.CreateWorkspace(workspace_service_pb2.CreateWorkspaceRequest(workspace=workspace_pb2.Workspace()))
    except AdplaneError as error:
        # Staff see INVALID_ARGUMENT with the field violations; a member PERMISSION_DENIED.
        print("refused:", error.status.name, error.reason, error.field_violations)
    if mine:
        request = request_service_pb2.WatchWorkspaceRequestsRequest(workspace_id=mine[0])
        call = RequestServiceStub(channel).WatchWorkspaceRequests
        # The stream is ended from another thread after a while: closing the channel cancels it.
        threading.Timer(float(seconds), channel.close).start()
        try:
            for event in watch(call, request):
                if isinstance(event, Reload):
                    print(f"starting over ({event.cause.reason}): a new snapshot follows")
                else:
                    print(event)
        except AdplaneError as error:
            print("watch ended:", error.status.name)
