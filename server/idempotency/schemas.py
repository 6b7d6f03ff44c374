import hashlib
import uuid

from pydantic import BaseModel, ConfigDict


class IdempotencyRecordSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    scope: str
    key: str
    fingerprint: str
    resource_id: uuid.UUID | None


def fingerprint(payload: BaseModel) -> str:
    """What a request asked for; the same request_id with another fingerprint is a client bug."""
    return hashlib.sha256(payload.model_dump_json().encode()).hexdigest()
