// Quick start: sign in through Envoy (gRPC-Web), list the workspaces you belong to (ListMyWorkspaces:
// any signed-in user may call it; ListWorkspaces is for staff), show how a refused call reads, then
// follow the first workspace's requests for a few seconds (a watch that resumes if the connection
// drops). In a project with @adplane/sdk and @connectrpc/connect-web installed, compiled to JavaScript:
//   node quickstart.js [baseUrl] [email] [password] [seconds]
import {
  AdplaneError,
  Code,
  enumName,
  pages,
  toJsonString,
  WatchWorkspaceRequestsResponseSchema,
  watch,
  WorkspaceRoleSchema,
} from "@adplane/sdk";
import { createWebClient, signIn } from "@adplane/sdk/web";

const [baseUrl = "http://localhost:8080", email = "admin@example.com", password = "adplane-dev-admin", seconds = "3"] =
  process.argv.slice(2);
const api = createWebClient(baseUrl, await signIn(baseUrl, email, password));

const mine: string[] = [];
for await (const membership of pages(api.workspaces.listMyWorkspaces, { pageSize: 100 }, (reply) => reply.workspaces)) {
  console.log(`member of ${membership.workspace?.name} as ${enumName(WorkspaceRoleSchema, membership.role)}`);
  if (membership.workspace) mine.push(membership.workspace.id);
}

try {
  await api.workspaces.createWorkspace({ workspace: { name: "" } });
} catch (error) {
  if (!(error instanceof AdplaneError)) throw error;
  // Staff see INVALID_ARGUMENT with the field violations; a member PERMISSION_DENIED.
  console.log(`refused: ${Code[error.code]} ${error.reason}`, error.fieldViolations);
}

if (mine[0] !== undefined) {
  const stop = AbortSignal.timeout(Number(seconds) * 1000);
  try {
    for await (const event of watch(api.requests.watchWorkspaceRequests, { workspaceId: mine[0] }, { signal: stop })) {
      if (event.kind === "reload") console.log(`starting over (${event.cause.reason}): a new snapshot follows`);
      else console.log(toJsonString(WatchWorkspaceRequestsResponseSchema, event.message));
    }
  } catch (error) {
    if (!stop.aborted) throw error;
  }
}
