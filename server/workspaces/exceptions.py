import uuid

from server.exceptions import (
    AlreadyExistsException,
    ConflictException,
    FailedPreconditionException,
    NotFoundException,
    PermissionDeniedException,
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


class WorkspaceNotActiveException(FailedPreconditionException):
    """Work is asked for, approved and moved only into active workspaces (not suspended or archived)."""

    reason = "WORKSPACE_NOT_ACTIVE"

    def __init__(self, workspace_id: uuid.UUID, status: str) -> None:
        super().__init__(
            f"workspace {workspace_id} is {status}; only an active workspace takes new work or accounts",
            metadata={"workspace_id": str(workspace_id), "status": status},
        )


class WorkspaceEtagMismatchException(ConflictException):
    def __init__(self, workspace_id: uuid.UUID) -> None:
        super().__init__(
            f"workspace {workspace_id} was changed by someone else; read it again and retry",
            metadata={"workspace_id": str(workspace_id)},
        )


class MemberNotFoundException(NotFoundException):
    reason = "MEMBER_NOT_FOUND"

    def __init__(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> None:
        super().__init__(
            f"user {user_id} is not a member of workspace {workspace_id}",
            metadata={"workspace_id": str(workspace_id), "user_id": str(user_id)},
        )


class AlreadyMemberException(AlreadyExistsException):
    reason = "ALREADY_MEMBER"

    def __init__(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> None:
        super().__init__(
            f"user {user_id} already is a member of workspace {workspace_id}",
            metadata={"workspace_id": str(workspace_id), "user_id": str(user_id)},
        )


class MemberUserNotFoundException(NotFoundException):
    reason = "USER_NOT_FOUND"

    def __init__(self, user_id: uuid.UUID) -> None:
        super().__init__(f"user {user_id} not found", metadata={"user_id": str(user_id)})


class MemberUserInactiveException(FailedPreconditionException):
    reason = "USER_INACTIVE"

    def __init__(self, user_id: uuid.UUID) -> None:
        super().__init__(f"user {user_id} is deactivated", metadata={"user_id": str(user_id)})


class LastOwnerException(FailedPreconditionException):
    reason = "LAST_OWNER"

    def __init__(self, workspace_id: uuid.UUID) -> None:
        super().__init__(
            "a workspace must keep at least one owner; make someone else owner first",
            metadata={"workspace_id": str(workspace_id)},
        )


class OwnerRequiredException(PermissionDeniedException):
    reason = "OWNER_REQUIRED"

    def __init__(self) -> None:
        super().__init__("only an owner of the workspace may grant, change or remove the owner role")
