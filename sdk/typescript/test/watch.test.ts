// watch()'s pure parts, which need no stack: the back-off and which failures it resumes after.
// (tests/e2e/sdk runs resume.test.ts, which stops server processes under a watch.)
import assert from "node:assert/strict";
import { test } from "node:test";
import { AdplaneError, backoffDelay, Code, ConnectError, isResumable } from "../src/index.js";
import { ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";

test("the back-off doubles up to its ceiling, and jitter spreads each wait below it", () => {
  assert.deepEqual(
    [0, 1, 2, 3, 10].map((attempt) => backoffDelay(attempt, 100, 1000, () => 1)),
    [100, 200, 400, 800, 1000],
  );
  assert.equal(backoffDelay(3, 100, 1000, () => 0), 0);
  const waits = Array.from({ length: 200 }, () => backoffDelay(2, 100, 1000));
  assert.ok(waits.every((wait) => wait >= 0 && wait < 400));
  assert.ok(new Set(waits.map((wait) => Math.floor(wait / 100))).size > 1, "no jitter");
});

test("a watch resumes after UNAVAILABLE, RESOURCE_EXHAUSTED or a broken connection, and nothing else", () => {
  // adplane's own errors carry an ErrorInfo; a cut connection has none.
  const fromServer = (code: Code) =>
    new AdplaneError(
      new ConnectError("from the server", code, undefined, [
        { desc: ErrorInfoSchema, value: { reason: "SOMETHING", domain: "adplane" } },
      ]),
    );
  const local = (code: Code) => new AdplaneError(new ConnectError("no status received", code));
  assert.ok(isResumable(fromServer(Code.Unavailable)));
  assert.ok(isResumable(fromServer(Code.ResourceExhausted)));
  for (const code of [Code.Unknown, Code.Internal, Code.Canceled]) {
    assert.ok(isResumable(local(code)), Code[code]);
  }
  for (const code of [Code.PermissionDenied, Code.Unauthenticated, Code.FailedPrecondition, Code.Internal]) {
    assert.ok(!isResumable(fromServer(code)), Code[code]);
  }
});
