import uuid

from server.exceptions import NotFoundException


class ExportNotFoundException(NotFoundException):
    """No such export, or one of another workspace than the caller's (never a hint that it exists)."""

    reason = "EXPORT_NOT_FOUND"

    def __init__(self, export_id: uuid.UUID) -> None:
        super().__init__(f"export {export_id} not found", metadata={"export_id": str(export_id)})


class ExportExpiredException(NotFoundException):
    """An export older than EXPORT_RETENTION_DAYS: its file is deleted (or about to be). Told by the
    id's own time (UUIDv7), so it says no more of an export of another workspace than NOT_FOUND does."""

    reason = "EXPORT_EXPIRED"

    def __init__(self, export_id: uuid.UUID, *, retention_days: int) -> None:
        super().__init__(
            f"export {export_id} has expired: exports are kept {retention_days} days",
            metadata={"export_id": str(export_id), "retention_days": str(retention_days)},
        )
