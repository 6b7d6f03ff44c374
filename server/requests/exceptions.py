import uuid

from server.exceptions import (
    FailedPreconditionException,
    NotFoundException,
    ResourceExhaustedException,
    UnavailableException,
)
from server.requests.models import RequestStatus


class RequestNotFoundException(NotFoundException):
    reason = "REQUEST_NOT_FOUND"

    def __init__(self, request_id: uuid.UUID) -> None:
        super().__init__(f"request {request_id} not found", metadata={"id": str(request_id)})


class IllegalTransitionException(FailedPreconditionException):
    """The request is not in the status the asked move starts from: REQUEST_NOT_WAITING for
    reviews and cancellations, REQUEST_NOT_APPROVED for finishing the work."""

    def __init__(self, request_id: uuid.UUID, status: RequestStatus, *, to: RequestStatus) -> None:
        finishing = to in (RequestStatus.COMPLETED, RequestStatus.FAILED)
        super().__init__(
            f"request {request_id} is {status.value}; it cannot become {to.value}",
            reason="REQUEST_NOT_APPROVED" if finishing else "REQUEST_NOT_WAITING",
            metadata={"id": str(request_id), "status": status.value, "to": to.value},
        )


class RequestExpiredException(FailedPreconditionException):
    reason = "REQUEST_EXPIRED"

    def __init__(self, request_id: uuid.UUID) -> None:
        super().__init__(
            f"request {request_id} expired before it was reviewed; ask again", metadata={"id": str(request_id)}
        )


class RequestNotRetryableException(FailedPreconditionException):
    reason = "REQUEST_NOT_RETRYABLE"

    def __init__(self, request_id: uuid.UUID, status: RequestStatus) -> None:
        super().__init__(
            f"request {request_id} is {status.value}; only a request that failed for transient reasons can be retried",
            metadata={"id": str(request_id), "status": status.value},
        )


class ResumeTokenExpiredException(FailedPreconditionException):
    """The changes after a resume token are no longer kept; the client watches again without it."""

    reason = "RESUME_TOKEN_EXPIRED"

    def __init__(self, token: str) -> None:
        super().__init__(
            f"resume token {token} is older than the retention window; watch again without it for a new snapshot",
            metadata={"resume_token": token},
        )


class WatchBufferOverflowException(ResourceExhaustedException):
    """The client read more slowly than changes arrived; it resumes from its last token."""

    reason = "WATCH_BUFFER_OVERFLOW"

    def __init__(self, size: int) -> None:
        super().__init__(
            f"more than {size} changes waited to be sent; resume with the last resume_token",
            metadata={"buffer_size": str(size)},
        )


class WatchEndedException(UnavailableException):
    """The server stops streaming (shutting down, or the event stream is unreachable); the client
    reconnects, to another server if need be, with its last resume token."""
