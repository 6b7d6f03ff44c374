// watch() while the server process under it is killed (SIGKILL: the connection drops without a
// status), through Envoy to two processes and straight to one that is started again. Run by
// tests/e2e/sdk/test_typescript_sdk.py, whose control server (ADPLANE_CONTROL_URL) kills and starts
// the processes; every change must arrive once, in order.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";
import {
  type AdplaneClient,
  AdplaneError,
  Code,
  RequestChangeKind,
  type TokenCredentials,
  watch,
  type WatchEvent,
  type WatchWorkspaceRequestsResponse,
} from "../src/index.js";
import * as node from "../src/node.js";
import * as web from "../src/web.js";
import { env, SKIP_WITHOUT_CONTROL } from "./stack.js";
const FAST = { initialDelayMs: 50, maxDelayMs: 500 };

async function control(action: "kill" | "start", body: { port: number } | { holder: true }): Promise<number> {
  const reply = await fetch(`${env("ADPLANE_CONTROL_URL")}/${action}`, { method: "POST", body: JSON.stringify(body) });
  const answer = (await reply.json()) as { port?: number; error?: string };
  assert.equal(reply.status, 200, answer.error);
  assert.ok(answer.port !== undefined);
  return answer.port;
}

/** Calls through Envoy right after a process died may still be sent to it (UNAVAILABLE) until its
 * health check fails; the request_id makes trying again safe. */
async function requestPixel(edge: AdplaneClient, workspaceId: string, businessManagerId: string, name: string) {
  const requestId = randomUUID();
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const reply = await edge.pixels.requestPixel({ workspaceId, pixel: { name, businessManagerId }, requestId });
      assert.ok(reply.request);
      return reply.request.id;
    } catch (error) {
      if (!(error instanceof AdplaneError) || error.code !== Code.Unavailable || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

type Events = AsyncIterator<WatchEvent<WatchWorkspaceRequestsResponse>>;

async function next(events: Events): Promise<WatchWorkspaceRequestsResponse> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("no message within 20 s")), 20_000);
  });
  try {
    const result = await Promise.race([events.next(), timeout]);
    assert.ok(!result.done, "the watch ended");
    assert.equal(result.value.kind, "message", "a reload: the watch lost its place");
    return (result.value as { message: WatchWorkspaceRequestsResponse }).message;
  } finally {
    clearTimeout(timer);
  }
}

async function nextChange(events: Events): Promise<[RequestChangeKind, string]> {
  for (;;) {
    const message = await next(events);
    if (message.event.case === "change") return [message.event.value.kind, message.event.value.request?.id ?? ""];
  }
}

async function pastSnapshot(events: Events): Promise<void> {
  for (;;) {
    const message = await next(events);
    if (message.event.case === "snapshot" && message.event.value.complete) return;
  }
}

async function scenario(watched: AdplaneClient, edge: AdplaneClient, kill: () => Promise<unknown>, restart: () => Promise<unknown>) {
  const suffix = randomUUID().slice(0, 8);
  const workspace = (await edge.workspaces.createWorkspace({ workspace: { name: `ts-resume-${suffix}` } })).workspace;
  assert.ok(workspace);
  const businessManager = (
    await edge.businessManagers.createBusinessManager({
      businessManager: { metaBusinessId: String(Date.now()), name: `ts-resume-${suffix}`, systemUserToken: "t".repeat(40) },
    })
  ).businessManager;
  assert.ok(businessManager);
  const stop = new AbortController();
  const retries: Code[] = [];
  const events = watch(
    watched.requests.watchWorkspaceRequests,
    { workspaceId: workspace.id },
    { ...FAST, signal: stop.signal, onRetry: (error) => retries.push(error.code) },
  )[Symbol.asyncIterator]();
  try {
    await pastSnapshot(events);
    const ask = (name: string) => requestPixel(edge, workspace.id, businessManager.id, name);
    const one = await ask("one");
    assert.deepEqual(await nextChange(events), [RequestChangeKind.CREATED, one]);
    await kill();
    const two = await ask("two");
    const three = await ask("three");
    await restart();
    assert.deepEqual([await nextChange(events), await nextChange(events)], [
      [RequestChangeKind.CREATED, two],
      [RequestChangeKind.CREATED, three],
    ]);
    const four = await ask("four");
    assert.deepEqual(await nextChange(events), [RequestChangeKind.CREATED, four]); // nothing repeated before it
  } finally {
    stop.abort();
    await events.return?.();
  }
  assert.ok(retries.length > 0, "the watch was never cut off");
}

describe("watch() across a killed server process", { skip: SKIP_WITHOUT_CONTROL }, () => {
  const signIn = (): Promise<TokenCredentials> =>
    web.signIn(env("ADPLANE_PAIR_WEB_URL"), env("ADPLANE_EMAIL"), env("ADPLANE_PASSWORD"));

  test("gRPC-Web through Envoy: the other process carries the watch on", async () => {
    const api = web.createWebClient(env("ADPLANE_PAIR_WEB_URL"), await signIn());
    let killed: number | undefined;
    try {
      await scenario(
        api,
        api,
        async () => {
          killed = await control("kill", { holder: true });
        },
        async () => {},
      );
    } finally {
      if (killed !== undefined) await control("start", { port: killed });
    }
  });

  test("gRPC straight to the server: the watch resumes when it is started again", async () => {
    const credentials = await signIn();
    const edge = web.createWebClient(env("ADPLANE_PAIR_WEB_URL"), credentials);
    const direct = node.createNodeClient(env("ADPLANE_PAIR_GRPC_URL"), credentials);
    const port = Number(env("ADPLANE_PAIR_GRPC_PORT"));
    await scenario(
      direct,
      edge,
      () => control("kill", { port }),
      () => control("start", { port }),
    );
  });
});
