"""Typed errors from the `google.rpc.Status` the server attaches to every failed call."""

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

_STATUS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field (`BadRequest.FieldViolation`)."""

    field: str
    description: str
    reason: str = ""


@dataclass
class AdplaneError(grpc.RpcError):
    """A failed call, with its status details decoded.

    `reason` is the ErrorInfo reason (UPPER_SNAKE, domain `adplane`), `field_violations` the
    BadRequest details of a validation error, `retry_delay` the RetryInfo delay in seconds.
    """

    status: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)
    retry_delay: float | None = None

    def __str__(self) -> str:
        return f"{self.status.name} {self.reason or '-'}: {self.message}"

    # The grpc.Call surface, so code written against plain RpcErrors keeps working.
    def code(self) -> grpc.StatusCode:
        return self.status

    def details(self) -> str:
        return self.message

    @classmethod
    def from_status(cls, code: grpc.StatusCode, message: str, status: status_pb2.Status | None) -> "AdplaneError":
        error = cls(status=code, message=message)
        for detail in status.details if status is not None else []:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                error.reason, error.domain, error.metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                error.field_violations.extend(
                    FieldViolation(v.field, v.description, v.reason) for v in bad.field_violations
                )
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                error.retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
        return error

    @classmethod
    def from_rpc_error(cls, error: Any) -> "AdplaneError":
        """From a failed sync or asyncio call (anything with code(), details(), trailing_metadata())."""
        status = None
        for key, value in error.trailing_metadata() or ():
            if key == _STATUS_KEY:
                status = status_pb2.Status.FromString(value)
        return cls.from_status(error.code(), error.details() or "", status)
