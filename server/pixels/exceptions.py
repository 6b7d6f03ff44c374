import uuid
from collections.abc import Iterable

from server.exceptions import FailedPreconditionException, NotFoundException


def _joined(ids: Iterable[uuid.UUID]) -> str:
    return ",".join(str(i) for i in ids)


class PixelNotFoundException(NotFoundException):
    reason = "PIXEL_NOT_FOUND"

    def __init__(self, pixel_id: uuid.UUID) -> None:
        super().__init__(f"pixel {pixel_id} not found", metadata={"pixel_id": str(pixel_id)})


class PixelShareNotFoundException(NotFoundException):
    reason = "PIXEL_SHARE_NOT_FOUND"

    def __init__(self, pixel_id: uuid.UUID, account_id: uuid.UUID) -> None:
        super().__init__(
            f"pixel {pixel_id} is not shared with account {account_id}",
            metadata={"pixel_id": str(pixel_id), "account_id": str(account_id)},
        )


class ShareAccountNotFoundException(NotFoundException):
    """An account to share with is unknown or belongs to another workspace (never told apart)."""

    reason = "ACCOUNT_NOT_FOUND"

    def __init__(self, account_id: uuid.UUID) -> None:
        super().__init__(f"account {account_id} not found", metadata={"account_id": str(account_id)})


class ShareAccountNotActiveException(FailedPreconditionException):
    reason = "ACCOUNT_NOT_ACTIVE"

    def __init__(self, account_ids: list[uuid.UUID]) -> None:
        super().__init__(
            f"accounts are not active: {_joined(account_ids)}", metadata={"account_ids": _joined(account_ids)}
        )


class AlreadySharedException(FailedPreconditionException):
    reason = "ALREADY_SHARED"

    def __init__(self, pixel_id: uuid.UUID, account_ids: list[uuid.UUID]) -> None:
        super().__init__(
            f"pixel {pixel_id} is already shared with: {_joined(account_ids)}",
            metadata={"pixel_id": str(pixel_id), "account_ids": _joined(account_ids)},
        )
