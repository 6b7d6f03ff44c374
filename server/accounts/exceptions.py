import uuid

from server.exceptions import (
    ConflictException,
    FailedPreconditionException,
    FieldViolation,
    InvalidRequestException,
    NotFoundException,
)


class AccountNotFoundException(NotFoundException):
    """No such account, or one of another workspace than the caller's (never a hint that it exists)."""

    reason = "ACCOUNT_NOT_FOUND"

    def __init__(self, account_id: uuid.UUID) -> None:
        super().__init__(f"account {account_id} not found", metadata={"account_id": str(account_id)})


class AccountArchivedException(FailedPreconditionException):
    reason = "ACCOUNT_ARCHIVED"

    def __init__(self, account_id: uuid.UUID) -> None:
        super().__init__(
            f"account {account_id} is archived and cannot be changed", metadata={"account_id": str(account_id)}
        )


class AccountEtagMismatchException(ConflictException):
    def __init__(self, account_id: uuid.UUID) -> None:
        super().__init__(
            f"account {account_id} was changed by someone else; read it again and retry",
            metadata={"account_id": str(account_id)},
        )


class BusinessManagerNotUsableException(FailedPreconditionException):
    """Not an active platform business manager nor an active client one of the workspace: it cannot
    hold the workspace's new accounts or pixels (raised by both services).

    Also raised for an id that does not exist at all: telling "unknown" (NOT_FOUND) apart from
    "exists but not yours or not active" would reveal client business managers of other workspaces.
    """

    reason = "BUSINESS_MANAGER_NOT_USABLE"

    def __init__(self, business_manager_id: uuid.UUID) -> None:
        super().__init__(
            f"business manager {business_manager_id} cannot be used by this workspace: it must be an active "
            "platform business manager or an active client business manager of the workspace",
            metadata={"business_manager_id": str(business_manager_id)},
        )


class SpendCapCurrencyMismatchException(InvalidRequestException):
    def __init__(self, *, asked: str, currency: str) -> None:
        super().__init__(
            [
                FieldViolation(
                    field="spend_cap.currency",
                    description=f"must be the account's currency {currency}, not {asked}",
                    reason="CURRENCY_MISMATCH",
                )
            ],
            reason="CURRENCY_MISMATCH",
        )


class NotAMemberException(FailedPreconditionException):
    reason = "NOT_A_MEMBER"

    def __init__(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> None:
        super().__init__(
            f"user {user_id} is not a member of workspace {workspace_id}",
            metadata={"workspace_id": str(workspace_id), "user_id": str(user_id)},
        )


class AccountUserLimitException(FailedPreconditionException):
    reason = "ACCOUNT_USER_LIMIT"

    def __init__(self, account_id: uuid.UUID, *, limit: int) -> None:
        super().__init__(
            f"account {account_id} already has {limit} users, the most Meta allows; unassign someone first",
            metadata={"account_id": str(account_id), "limit": str(limit)},
        )


class AccountUserNotFoundException(NotFoundException):
    reason = "ACCOUNT_USER_NOT_FOUND"

    def __init__(self, account_id: uuid.UUID, user_id: uuid.UUID) -> None:
        super().__init__(
            f"user {user_id} has no access to account {account_id}",
            metadata={"account_id": str(account_id), "user_id": str(user_id)},
        )


class AccountAlreadyInWorkspaceException(FailedPreconditionException):
    reason = "ACCOUNT_ALREADY_IN_WORKSPACE"

    def __init__(self, account_id: uuid.UUID, workspace_id: uuid.UUID) -> None:
        super().__init__(
            f"account {account_id} already belongs to workspace {workspace_id}",
            metadata={"account_id": str(account_id), "workspace_id": str(workspace_id)},
        )


class AccountInClientBusinessManagerException(FailedPreconditionException):
    """A client's own business manager, and the accounts in it, stay with the client's workspace."""

    reason = "ACCOUNT_IN_CLIENT_BUSINESS_MANAGER"

    def __init__(self, account_id: uuid.UUID, business_manager_id: uuid.UUID) -> None:
        super().__init__(
            f"account {account_id} lives in the workspace's own business manager {business_manager_id} "
            "and cannot move to another workspace",
            metadata={"account_id": str(account_id), "business_manager_id": str(business_manager_id)},
        )
