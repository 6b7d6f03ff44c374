import uuid

from server.exceptions import (
    AlreadyExistsException,
    ConflictException,
    FailedPreconditionException,
    NotFoundException,
)


class WorkspaceNotFoundException(NotFoundException):
    reason = "WORKSPACE_NOT_FOUND"

    def __init__(self, workspace_id: uuid.UUID) -> None:
        super().__init__(f"workspace {workspace_id} not found", metadata={"workspace_id": str(workspace_id)})


class WorkspaceNameTakenException(AlreadyExistsException):
    reason = "WORKSPACE_NAME_TAKEN"

    def __init__(self, name: str) -> None:
        super().__init__(f"a workspace named {name!r} already exists", metadata={"name": name})


class WorkspaceArchivedException(FailedPreconditionException):
    reason = "WORKSPACE_ARCHIVED"

    def __init__(self, workspace_id: uuid.UUID) -> None:
        super().__init__(
            f"workspace {workspace_id} is archived and cannot be changed",
            metadata={"workspace_id": str(workspace_id)},
        )


class WorkspaceEtagMismatchException(ConflictException):
    def __init__(self, workspace_id: uuid.UUID) -> None:
        super().__init__(
            f"workspace {workspace_id} was changed by someone else; read it again and retry",
            metadata={"workspace_id": str(workspace_id)},
        )
