// The SDK against the real stack (started by tests/e2e/sdk/test_typescript_sdk.py, which passes its
// URLs and accounts in the environment), over gRPC-Web through Envoy and over gRPC to the server.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  AdplaneError,
  ApiKeyCredentials,
  type AdplaneClient,
  Code,
  type Credentials,
  pages,
  RequestChangeKind,
  TokenCredentials,
  watch,
  type WatchEvent,
} from "../src/index.js";
import * as node from "../src/node.js";
import * as web from "../src/web.js";
import { env, SKIP_WITHOUT_STACK } from "./stack.js";


interface Flavour {
  client(credentials?: Credentials): AdplaneClient;
  signIn(email: string): Promise<TokenCredentials>;
}

const flavours: Record<string, () => Flavour> = {
  "gRPC-Web via Envoy": () => ({
    client: (credentials) => web.createWebClient(env("ADPLANE_WEB_URL"), credentials),
    signIn: (email) => web.signIn(env("ADPLANE_WEB_URL"), email, env("ADPLANE_PASSWORD")),
  }),
  "gRPC to the server": () => ({
    client: (credentials) => node.createNodeClient(env("ADPLANE_GRPC_URL"), credentials),
    signIn: (email) => node.signIn(env("ADPLANE_GRPC_URL"), email, env("ADPLANE_PASSWORD")),
  }),
};

async function failure(call: Promise<unknown>): Promise<AdplaneError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof AdplaneError, `not an AdplaneError: ${String(error)}`);
    return error;
  }
  assert.fail("the call succeeded");
}

for (const [name, make] of Object.entries(flavours)) {
  describe(name, { skip: SKIP_WITHOUT_STACK }, () => {
    const flavour = make();
    const admin = env("ADPLANE_EMAIL");
    const member = env("ADPLANE_MEMBER_EMAIL");
    const memberWorkspace = env("ADPLANE_MEMBER_WORKSPACE");

    test("signs in, creates workspaces and lists them across pages", async () => {
      const api = flavour.client(await flavour.signIn(admin));
      const prefix = `ts-${name.slice(0, 4)}-${Date.now()}`;
      const created: string[] = [];
      for (let i = 0; i < 5; i++) {
        const reply = await api.workspaces.createWorkspace({ workspace: { name: `${prefix}-${i}` } });
        assert.ok(reply.workspace);
        created.push(reply.workspace.id);
      }
      let pagesSeen = 0;
      const list = (request: Parameters<typeof api.workspaces.listWorkspaces>[0]) => {
        pagesSeen++;
        return api.workspaces.listWorkspaces(request);
      };
      const listed: string[] = [];
      for await (const workspace of pages(list, { pageSize: 2 }, (reply) => reply.workspaces)) {
        listed.push(workspace.id);
      }
      assert.deepEqual(
        listed.filter((id) => created.includes(id)),
        created,
      );
      assert.ok(pagesSeen >= 3, `only ${pagesSeen} pages`);
    });

    test("a member's call into another workspace is refused with its reason", async () => {
      const staff = flavour.client(await flavour.signIn(admin));
      const other = await staff.workspaces.createWorkspace({ workspace: { name: `ts-other-${Date.now()}` } });
      const api = flavour.client(await flavour.signIn(member));
      const own = await api.workspaces.getWorkspace({ workspaceId: memberWorkspace });
      assert.equal(own.workspace?.id, memberWorkspace);
      const error = await failure(api.workspaces.getWorkspace({ workspaceId: other.workspace?.id ?? "" }));
      assert.ok([Code.PermissionDenied, Code.NotFound].includes(error.code), String(error));
      assert.equal(error.domain, "adplane");
      assert.match(error.reason, /^[A-Z][A-Z_]+$/);
    });

    test("a validation error carries its field violations", async () => {
      const api = flavour.client(await flavour.signIn(admin));
      const error = await failure(api.workspaces.createWorkspace({ workspace: { name: "" } }));
      assert.equal(error.code, Code.InvalidArgument);
      assert.ok(
        error.fieldViolations.some((violation) => violation.field.endsWith("name")),
        JSON.stringify(error.fieldViolations),
      );
    });

    test("an expiring access token is refreshed before the call", async () => {
      const credentials = await flavour.signIn(admin);
      const first = credentials.tokens;
      const spent = first.refreshToken;
      first.accessTokenExpireTime = timestampFromDate(new Date());
      const api = flavour.client(credentials);
      await api.auth.getCurrentUser({});
      assert.notEqual(credentials.tokens.refreshToken, spent);
      await api.auth.getCurrentUser({});
      // The old refresh token was spent by the renewal: replaying it ends the whole sign-in.
      const replay = await failure(flavour.client().auth.refreshToken({ refreshToken: spent }));
      assert.equal(replay.code, Code.Unauthenticated);
      assert.equal(replay.reason, "REFRESH_TOKEN_REUSED");
      const ended = await failure(api.auth.getCurrentUser({}));
      assert.equal(ended.code, Code.Unauthenticated);
    });

    test("watches the workspace's requests: the snapshot, then a new request as it is made", async () => {
      const api = flavour.client(await flavour.signIn(admin));
      const suffix = `${name.slice(0, 4)}-${Date.now()}`;
      const workspace = (await api.workspaces.createWorkspace({ workspace: { name: `ts-watch-${suffix}` } })).workspace;
      assert.ok(workspace);
      const businessManager = (
        await api.businessManagers.createBusinessManager({
          businessManager: { metaBusinessId: String(Date.now()), name: `ts-bm-${suffix}`, systemUserToken: "t".repeat(40) },
        })
      ).businessManager;
      assert.ok(businessManager);
      const stop = new AbortController();
      const stream = api.requests
        .watchWorkspaceRequests({ workspaceId: workspace.id }, { signal: stop.signal })
        [Symbol.asyncIterator]();
      try {
        const first = await stream.next();
        assert.equal(first.value?.event.case, "snapshot");
        assert.equal(first.value?.event.value.complete, true);
        assert.deepEqual(first.value?.event.value.requests, []);
        const asked = await api.pixels.requestPixel({
          workspaceId: workspace.id,
          pixel: { name: "watched", businessManagerId: businessManager.id },
        });
        let next = await stream.next();
        while (next.value?.event.case === "heartbeat") next = await stream.next();
        assert.equal(next.value?.event.case, "change");
        assert.equal(next.value?.event.value.request?.id, asked.request?.id);
        assert.equal(next.value?.event.value.kind, RequestChangeKind.CREATED);
        assert.ok(next.value?.resumeToken);
      } finally {
        stop.abort();
      }
    });

    test("a watch that fails while it is read throws an AdplaneError with its reason", async () => {
      const staff = flavour.client(await flavour.signIn(admin));
      const other = await staff.workspaces.createWorkspace({ workspace: { name: `ts-closed-${Date.now()}` } });
      const api = flavour.client(await flavour.signIn(member));
      const error = await failure(
        (async () => {
          for await (const _ of api.requests.watchWorkspaceRequests({ workspaceId: other.workspace?.id ?? "" })) {
            assert.fail("a message from a workspace the caller is not in");
          }
        })(),
      );
      assert.equal(error.code, Code.PermissionDenied, String(error));
      assert.equal(error.domain, "adplane");
      assert.match(error.reason, /^[A-Z][A-Z_]+$/);
    });

    test("watch() turns an expired resume token into a reload, then a new snapshot", async () => {
      const api = flavour.client(await flavour.signIn(member));
      const stop = new AbortController();
      const events: WatchEvent<unknown>[] = [];
      try {
        for await (const event of watch(
          api.requests.watchWorkspaceRequests,
          { workspaceId: memberWorkspace, resumeToken: "1-0" },
          { signal: stop.signal },
        )) {
          events.push(event);
          if (event.kind === "message" && event.message.event.case === "snapshot" && event.message.event.value.complete) {
            break;
          }
        }
      } finally {
        stop.abort();
      }
      const [first, ...rest] = events;
      assert.equal(first?.kind, "reload");
      assert.equal(first.kind === "reload" && first.cause.reason, "RESUME_TOKEN_EXPIRED");
      assert.ok(rest.length > 0 && rest.every((event) => event.kind === "message"));
    });

    test("an API key caller", async () => {
      const staff = flavour.client(await flavour.signIn(admin));
      const key = await staff.apiKeys.createApiKey({ apiKey: { name: `ts-key-${Date.now()}`, roleNames: ["administrator"] } });
      const api = flavour.client(new ApiKeyCredentials(key.secret));
      const reply = await api.workspaces.listWorkspaces({ pageSize: 1 });
      assert.equal(reply.workspaces.length, 1);
      const anonymous = await failure(flavour.client().workspaces.listWorkspaces({}));
      assert.equal(anonymous.code, Code.Unauthenticated);
    });
  });
}
