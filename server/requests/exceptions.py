import uuid

from server.exceptions import FailedPreconditionException, NotFoundException
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


class WorkspaceNotActiveException(FailedPreconditionException):
    reason = "WORKSPACE_NOT_ACTIVE"

    def __init__(self, workspace_id: uuid.UUID) -> None:
        super().__init__(
            f"workspace {workspace_id} is suspended or archived; no work is done for it",
            metadata={"workspace_id": str(workspace_id)},
        )


class RequestNotRetryableException(FailedPreconditionException):
    reason = "REQUEST_NOT_RETRYABLE"

    def __init__(self, request_id: uuid.UUID, status: RequestStatus) -> None:
        super().__init__(
            f"request {request_id} is {status.value}; only a request that failed for transient reasons can be retried",
            metadata={"id": str(request_id), "status": status.value},
        )
