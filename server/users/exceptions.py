import uuid
from collections.abc import Collection

from server.exceptions import (
    AlreadyExistsException,
    ConflictException,
    FailedPreconditionException,
    FieldViolation,
    InvalidRequestException,
    NotFoundException,
)


class UserNotFoundException(NotFoundException):
    reason = "USER_NOT_FOUND"

    def __init__(self, user_id: uuid.UUID) -> None:
        super().__init__(f"user {user_id} not found", metadata={"user_id": str(user_id)})


class EmailTakenException(AlreadyExistsException):
    reason = "EMAIL_TAKEN"

    def __init__(self, email: str) -> None:
        super().__init__(f"a user with email {email!r} already exists", metadata={"email": email})


class UserEtagMismatchException(ConflictException):
    def __init__(self, user_id: uuid.UUID) -> None:
        super().__init__(
            f"user {user_id} was changed by someone else; read it again and retry",
            metadata={"user_id": str(user_id)},
        )


class UnknownRoleException(InvalidRequestException):
    """Some of the role names asked for are not system roles (see ListRoles)."""

    def __init__(self, names: Collection[str]) -> None:
        unknown = sorted(set(names))
        listed = ", ".join(repr(name) for name in unknown)
        super().__init__(
            [FieldViolation(field="role_names", description=f"unknown roles: {listed}", reason="UNKNOWN_ROLE")],
            reason="UNKNOWN_ROLE",
        )
        self.role_names = unknown
        self.metadata["role_names"] = ",".join(unknown)


class CannotDeactivateSelfException(FailedPreconditionException):
    """A user may not deactivate themselves: they would lock themselves out mid-session."""

    reason = "CANNOT_DEACTIVATE_SELF"

    def __init__(self, user_id: uuid.UUID) -> None:
        super().__init__(
            "you cannot deactivate yourself; ask another administrator", metadata={"user_id": str(user_id)}
        )
