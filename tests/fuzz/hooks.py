"""Schemathesis hooks for the fuzz runs (loaded through SCHEMATHESIS_HOOKS by tests/e2e/test_fuzz.py).

`nothing_leaked` fails a response that carries any of the canary strings named in FUZZ_CANARIES (one
per line): names and ids of data the caller must never see.

`valid_input_refused_only_by_state`: schema-valid input may still be refused with 400 when the
resource's state does not allow the call (FAILED_PRECONDITION: a request that is not waiting, the
last owner, ...), which no schema can know; as INVALID_ARGUMENT it means the document promises less
than the server enforces. Operations whose validity depends on other fields or on other resources in
ways a schema cannot say are named, with why, in FUZZ_INPUT_DEPENDS_ON (one operation id per line).
"""

import json
import os
from typing import Any

import schemathesis

INVALID_ARGUMENT = 3


@schemathesis.check
def nothing_leaked(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    canaries = [line for line in os.environ.get("FUZZ_CANARIES", "").splitlines() if line]
    text = response.text or ""
    leaked = [canary for canary in canaries if canary in text]
    if leaked:
        raise AssertionError(f"response carries data the caller may not see: {leaked}")


@schemathesis.check
def valid_input_refused_only_by_state(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return
    if case.operation.definition.raw.get("operationId") in os.environ.get("FUZZ_INPUT_DEPENDS_ON", "").split():
        return
    try:
        code = json.loads(response.text or "").get("code")
    except (ValueError, AttributeError):
        code = None
    if code == INVALID_ARGUMENT:
        raise AssertionError(f"schema-valid input refused as INVALID_ARGUMENT: {response.text}")
