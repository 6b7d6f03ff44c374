"""Base domain exceptions. Modules subclass these; the error interceptor maps each base to a gRPC code.

Services and repositories raise them and know nothing of gRPC. Each carries a `reason`
(UPPER_SNAKE, the ErrorInfo reason clients switch on) and string metadata for ErrorInfo.
"""

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: `field` is a dotted path in the request (`workspace.name`)."""

    field: str
    description: str
    reason: str = "INVALID_FIELD"


class AdplaneException(Exception):
    """Root of every exception that reaches a caller with its own message."""

    reason: str = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidRequestException(AdplaneException):
    """The request is malformed; `violations` names the offending fields."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        violations: list[FieldViolation],
        *,
        message: str | None = None,
        reason: str | None = None,
    ) -> None:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(message or f"invalid request: {summary}", reason=reason)
        self.violations = violations


class NotFoundException(AdplaneException):
    reason = "NOT_FOUND"


class AlreadyExistsException(AdplaneException):
    reason = "ALREADY_EXISTS"


class FailedPreconditionException(AdplaneException):
    """The request is valid but the resource is not in a state that allows it."""

    reason = "FAILED_PRECONDITION"


class ConflictException(AdplaneException):
    """A concurrent change won (stale etag); the caller should re-read and retry."""

    reason = "ETAG_MISMATCH"


class UnauthenticatedException(AdplaneException):
    reason = "UNAUTHENTICATED"


class PermissionDeniedException(AdplaneException):
    reason = "PERMISSION_DENIED"


class ResourceExhaustedException(AdplaneException):
    """A quota or rate limit; `retry_after` tells the caller when to try again (RetryInfo)."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        retry_after: dt.timedelta | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after


class UnavailableException(AdplaneException):
    """A dependency (database, broker, Meta) is temporarily unreachable; retrying may succeed,
    after `retry_after` if given (RetryInfo)."""

    reason = "UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        retry_after: dt.timedelta | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after
