// The stack the end-to-end tests run against: tests/e2e/sdk/test_typescript_sdk.py starts it and
// passes its URLs and accounts in the environment. `npm test` alone has none: those tests skip.
import assert from "node:assert/strict";

const HOW = "no stack: run through pytest tests/e2e/sdk/test_typescript_sdk.py";

/** For describe(): skip, saying why, when the stack (or the control server for killing its server
 * processes) is not there. */
export const SKIP_WITHOUT_STACK = process.env.ADPLANE_WEB_URL === undefined ? HOW : false;
export const SKIP_WITHOUT_CONTROL = process.env.ADPLANE_CONTROL_URL === undefined ? HOW : false;

export function env(name: string): string {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run these tests through pytest (tests/e2e/sdk)`);
  return value;
}
