import uuid

from server.exceptions import NotFoundException


class ExportNotFoundException(NotFoundException):
    """No such export, or one of another workspace than the caller's (never a hint that it exists)."""

    reason = "EXPORT_NOT_FOUND"

    def __init__(self, export_id: uuid.UUID) -> None:
        super().__init__(f"export {export_id} not found", metadata={"export_id": str(export_id)})
