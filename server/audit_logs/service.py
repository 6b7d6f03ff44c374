"""The append-only audit trail: every mutation records an entry (actor, workspace, entity, action,
before/after) in its own transaction through `IAuditTrail`, and staff and workspace admins list the
entries. The audit_logs module owns `audit_logs`; a database trigger refuses updates and deletes.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from server.audit_logs.repository import IAuditLogRepository
from server.audit_logs.schemas import AuditLogListRequestSchema, AuditLogResponseSchema
from server.auth.principal import Principal
from server.pagination import Page, PageTokenCodec


@dataclass(frozen=True)
class AuditEntry:
    """One mutation to record: what changed (`entity_type`, `entity_id`), how (`action`), in which
    workspace (None: none, or staff's own), and snapshots of the entity before and after it."""

    entity_type: str
    entity_id: uuid.UUID
    action: str
    workspace_id: uuid.UUID | None
    before: BaseModel | None = None
    after: BaseModel | None = None


class IAuditTrail(Protocol):
    async def record(
        self,
        *,
        entity_type: str,
        entity_id: uuid.UUID,
        action: str,
        workspace_id: uuid.UUID | None,
        before: BaseModel | None = None,
        after: BaseModel | None = None,
    ) -> None: ...
    async def record_many(self, entries: Sequence[AuditEntry]) -> None: ...


class AuditTrail:
    """Writes audit entries for one unit of work, on behalf of its caller.

    Entries go into the same transaction as the mutation they describe: both commit or neither.
    Snapshots are the service schemas as JSON, which never carry secrets.
    """

    def __init__(self, repository: IAuditLogRepository, *, actor: Principal | None, trace_id: str | None) -> None:
        self._repository = repository
        self._actor = actor
        self._trace_id = trace_id

    async def record(
        self,
        *,
        entity_type: str,
        entity_id: uuid.UUID,
        action: str,
        workspace_id: uuid.UUID | None,
        before: BaseModel | None = None,
        after: BaseModel | None = None,
    ) -> None:
        await self.record_many([AuditEntry(entity_type, entity_id, action, workspace_id, before, after)])

    async def record_many(self, entries: Sequence[AuditEntry]) -> None:
        """Many entries in one statement whatever their number (none: no statement), in this order,
        all on behalf of the same caller: the bulk writes of the workers' jobs."""
        actor_type = self._actor.kind.value if self._actor else None
        actor_id = self._actor.id if self._actor else None
        await self._repository.add_many(
            [
                {
                    "actor_type": actor_type,
                    "actor_id": actor_id,
                    "workspace_id": entry.workspace_id,
                    "entity_type": entry.entity_type,
                    "entity_id": entry.entity_id,
                    "action": entry.action,
                    "before": entry.before.model_dump(mode="json") if entry.before is not None else None,
                    "after": entry.after.model_dump(mode="json") if entry.after is not None else None,
                    "trace_id": self._trace_id,
                }
                for entry in entries
            ]
        )


class IAuditLogService(Protocol):
    async def list_audit_logs(self, query: AuditLogListRequestSchema) -> Page[AuditLogResponseSchema]: ...


class AuditLogService:
    def __init__(self, *, repository: IAuditLogRepository, page_tokens: PageTokenCodec) -> None:
        self._repository = repository
        self._page_tokens = page_tokens

    async def list_audit_logs(self, query: AuditLogListRequestSchema) -> Page[AuditLogResponseSchema]:
        return await self._page_tokens.page(
            query,
            "audit_logs",
            fetch=lambda after, limit: self._repository.list_entries(query, before=after, limit=limit),
            convert=AuditLogResponseSchema.model_validate,
        )
