// Quick start against `make run`: sign in through Envoy (gRPC-Web), create a workspace, list them all.
// Run: cd sdk/typescript && npm run build && node dist/examples/quickstart.js [http://localhost:8080]
import { AdplaneError, pages } from "../src/index.js";
import { createWebClient, signIn } from "../src/web.js";

const baseUrl = process.argv[2] ?? "http://localhost:8080";
const credentials = await signIn(baseUrl, "admin@example.com", "adplane-dev-admin");
const api = createWebClient(baseUrl, credentials);

try {
  await api.workspaces.createWorkspace({ workspace: { name: `Acme ${Date.now()}` } });
  await api.workspaces.createWorkspace({ workspace: { name: "" } });
} catch (error) {
  if (!(error instanceof AdplaneError)) throw error;
  console.log(`refused: ${error.reason}`, error.fieldViolations);
}
for await (const workspace of pages(api.workspaces.listWorkspaces, { pageSize: 100 }, (reply) => reply.workspaces)) {
  console.log(workspace.id, workspace.name);
}
