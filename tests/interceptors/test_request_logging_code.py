"""The outcome line names the status code the way grpc.aio reports it."""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest

from server.interceptors.pipeline import Context
from server.interceptors.request_logging import code_name


class _Reported:
    def __init__(self, code: Any) -> None:
        self._code = code

    def code(self) -> Any:
        return self._code


@pytest.mark.parametrize(
    ("reported", "logged"),
    [
        (0, "OK"),  # grpc.aio's own "ok" before a handler sets anything
        (None, "OK"),
        (grpc.StatusCode.OK, "OK"),
        (grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (13, "13"),  # an unexpected raw value is logged as it is, not guessed at
    ],
)
def testcode_name(reported: Any, logged: str) -> None:
    assert code_name(cast(Context, _Reported(reported))) == logged
