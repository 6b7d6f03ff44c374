"""Schemathesis hooks for the fuzz runs (loaded through SCHEMATHESIS_HOOKS by tests/e2e/test_fuzz.py).

`nothing_leaked` fails a response that carries any of the canary strings named in FUZZ_CANARIES (one
per line): names and ids of data the caller must never see.
"""

import os
from typing import Any

import schemathesis


@schemathesis.check
def nothing_leaked(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    canaries = [line for line in os.environ.get("FUZZ_CANARIES", "").splitlines() if line]
    text = response.text or ""
    leaked = [canary for canary in canaries if canary in text]
    if leaked:
        raise AssertionError(f"response carries data the caller may not see: {leaked}")
