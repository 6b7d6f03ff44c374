"""Every statement over `requests`: reads narrowed to a tenant scope, the row lock of a transition,
conditional state changes, the creation marker, and the set-based expiry and requeue.
"""

import datetime as dt
import functools
import uuid
from typing import Any, Protocol

from sqlalchemy import Select, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import new_id, utcnow
from server.read_pool import DirectTransaction, PreparedRead
from server.requests.models import Request, RequestStatus, RequestType
from server.requests.schemas import RequestListRequestSchema
from server.tenancy import TenantScope, WorkspaceScope, conflicts, narrowed

# The direct forms (a unit of work on asyncpg): every column back, made into a detached Request.
_COLUMNS = tuple(Request.__table__.columns)
_GET_PREPARED = PreparedRead(select(*_COLUMNS).where(Request.id == bindparam("request_id")))
_GET_IN_WORKSPACE_PREPARED = PreparedRead(
    select(*_COLUMNS).where(Request.id == bindparam("request_id"), Request.workspace_id == bindparam("workspace_id"))
)


@functools.cache
def _add_prepared(names: frozenset[str]) -> PreparedRead:
    return PreparedRead(insert(Request).values({name: bindparam(name) for name in names}).returning(*_COLUMNS))


@functools.cache
def _transition_prepared(names: frozenset[str]) -> PreparedRead:
    """The conditional UPDATE of `transition` setting these columns (bound as `set_<name>`)."""
    return PreparedRead(
        update(Request)
        .where(Request.id == bindparam("request_id"), Request.status == bindparam("from_status"))
        .values(
            {
                **{name: bindparam(f"set_{name}") for name in names},
                "version": Request.version + 1,
                "updated_at": bindparam("set_updated_at"),
            }
        )
        .returning(*_COLUMNS)
    )


def _detached(row: Any) -> Request:
    values = dict(row.items())
    # asyncpg gives PostgreSQL enums as their labels.
    values["type"], values["status"] = RequestType(values["type"]), RequestStatus(values["status"])
    return Request(**values)


class IRequestRepository(Protocol):
    async def add(self, **values: Any) -> Request: ...
    async def get(self, request_id: uuid.UUID, *, scope: TenantScope) -> Request | None: ...
    async def list_requests(
        self,
        query: RequestListRequestSchema,
        *,
        scope: TenantScope,
        after: uuid.UUID | None,
        limit: int,
        newest_first: bool,
    ) -> list[Request]: ...
    async def transition(
        self, request_id: uuid.UUID, *, from_status: RequestStatus, values: dict[str, Any]
    ) -> Request | None: ...
    async def waiting_expired_ids(self, *, now: dt.datetime, limit: int) -> list[uuid.UUID]: ...
    async def due_for_requeue(self, *, stalled_before: dt.datetime, now: dt.datetime, limit: int) -> list[Request]: ...
    async def hold(self, request_id: uuid.UUID, *, now: dt.datetime, retry_at: dt.datetime) -> Request | None: ...
    async def clear_retry_at(self, request_ids: list[uuid.UUID]) -> None: ...
    async def lock(self, request_id: uuid.UUID, *, scope: TenantScope) -> Request | None: ...


class RequestRepository:
    def __init__(self, session: AsyncSession, *, direct: DirectTransaction | None = None) -> None:
        self._session = session
        # A unit of work on asyncpg directly: the statements that have a direct form run there, and
        # the requests they return are detached (no session to lazy-load or flush them).
        self._direct = direct

    def _readable(self, scope: TenantScope) -> Select[Request]:
        """Every query starts here: narrowed to what `scope` may see."""
        return narrowed(select(Request), Request.workspace_id, scope)

    async def add(self, **values: Any) -> Request:
        if self._direct is not None:
            now = utcnow()
            values = {"id": new_id(), "version": 1, "created_at": now, "updated_at": now, **values}
            return _detached(await self._direct.one(_add_prepared(frozenset(values)), values))
        request = Request(**values)
        self._session.add(request)
        await self._session.flush()
        return request

    async def get(self, request_id: uuid.UUID, *, scope: TenantScope) -> Request | None:
        if self._direct is not None:
            if isinstance(scope, WorkspaceScope):
                parameters = {"request_id": request_id, "workspace_id": scope.workspace_id}
                row = await self._direct.one(_GET_IN_WORKSPACE_PREPARED, parameters)
            else:
                row = await self._direct.one(_GET_PREPARED, {"request_id": request_id})
            return None if row is None else _detached(row)
        # populate_existing: a re-read after a lost race must show the row as it is now.
        statement = self._readable(scope).where(Request.id == request_id)
        return await self._session.scalar(statement.execution_options(populate_existing=True))

    async def list_requests(
        self,
        query: RequestListRequestSchema,
        *,
        scope: TenantScope,
        after: uuid.UUID | None,
        limit: int,
        newest_first: bool,
    ) -> list[Request]:
        """A page of `scope`'s requests; `query.workspace_id` narrows further (a staff filter)."""
        if conflicts(scope, query.workspace_id):
            return []
        statement = self._readable(scope).limit(limit)
        if query.workspace_id is not None:
            statement = statement.where(Request.workspace_id == query.workspace_id)
        statement = statement.order_by(Request.id.desc() if newest_first else Request.id)
        if query.type is not None:
            statement = statement.where(Request.type == query.type)
        if query.status is not None:
            statement = statement.where(Request.status == query.status)
        if query.created_before is not None:
            statement = statement.where(Request.created_at < query.created_before)
        if query.created_after is not None:
            statement = statement.where(Request.created_at >= query.created_after)
        if after is not None:
            statement = statement.where(Request.id < after if newest_first else Request.id > after)
        return list(await self._session.scalars(statement))

    async def transition(
        self, request_id: uuid.UUID, *, from_status: RequestStatus, values: dict[str, Any]
    ) -> Request | None:
        """Move a request on only if it is still in `from_status` (one UPDATE, so of two
        concurrent moves exactly one wins); None when it is not. synchronize_session=False: when no
        row matched, the request object in the session must not take the values either."""
        if self._direct is not None:
            parameters = {f"set_{name}": value for name, value in values.items()}
            parameters |= {"request_id": request_id, "from_status": from_status, "set_updated_at": utcnow()}
            row = await self._direct.one(_transition_prepared(frozenset(values)), parameters)
            return None if row is None else _detached(row)
        statement = (
            update(Request)
            .where(Request.id == request_id, Request.status == from_status)
            .values(**values, version=Request.version + 1, updated_at=utcnow())
            .returning(Request)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def waiting_expired_ids(self, *, now: dt.datetime, limit: int) -> list[uuid.UUID]:
        statement = (
            select(Request.id)
            .where(Request.status == RequestStatus.WAITING_FOR_APPROVAL, Request.expires_at <= now)
            .order_by(Request.expires_at)
            .limit(limit)
        )
        return list(await self._session.scalars(statement))

    async def lock(self, request_id: uuid.UUID, *, scope: TenantScope) -> Request | None:
        """The request as it is now, its row locked (`SELECT ... FOR UPDATE`) until the transaction
        ends. The workers carry a request out under this lock, so two deliveries of the same
        request run one after the other and the second sees what the first did."""
        statement = (
            self._readable(scope)
            .where(Request.id == request_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return await self._session.scalar(statement)

    async def due_for_requeue(self, *, stalled_before: dt.datetime, now: dt.datetime, limit: int) -> list[Request]:
        """Approved requests whose work should run again: held ones whose `retry_at` came, and
        others reviewed before `stalled_before` (their work was lost) that are not held. Those in
        progress are skipped: a worker carrying one out holds its row lock (`lock`) until it is done,
        so SKIP LOCKED leaves out exactly the requests being worked on right now; the rows returned
        stay locked until the caller's transaction ends."""
        statement = (
            select(Request)
            .where(
                Request.status == RequestStatus.APPROVED,
                or_(
                    Request.retry_at <= now,
                    and_(Request.retry_at.is_(None), Request.reviewed_at < stalled_before),
                ),
            )
            .order_by(Request.reviewed_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(await self._session.scalars(statement))

    async def hold(self, request_id: uuid.UUID, *, now: dt.datetime, retry_at: dt.datetime) -> Request | None:
        """Keep an APPROVED request waiting until `retry_at` (waiting since `now` unless it already
        was); None when it is no longer APPROVED. Bookkeeping of the work: no version change."""
        statement = (
            update(Request)
            .where(Request.id == request_id, Request.status == RequestStatus.APPROVED)
            .values(waiting_since=func.coalesce(Request.waiting_since, now), retry_at=retry_at)
            .returning(Request)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def clear_retry_at(self, request_ids: list[uuid.UUID]) -> None:
        if request_ids:
            await self._session.execute(
                update(Request)
                .where(Request.id.in_(request_ids))
                .values(retry_at=None)
                .execution_options(synchronize_session=False)
            )

    async def mark_creation_started(self, request_id: uuid.UUID, marker: dict[str, Any]) -> bool:
        """Record in the request's `result` that its work is about to create an object on Meta;
        False when the request is no longer APPROVED or carries a marker already (another attempt
        wrote it first).

        One conditional UPDATE, so of two deliveries marking at once exactly one wins. The caller
        commits it before calling Meta: the marker must outlive a worker that dies after Meta
        created the object. `marker` must hold a "creation_started_at" key (the one checked here);
        completing or failing the request replaces the whole `result`, marker included. Neither
        the version nor `updated_at` move: the marker is the work's bookkeeping, not a change of
        the request anyone made.
        """
        if "creation_started_at" not in marker:
            raise ValueError("a creation marker needs a creation_started_at")
        statement = (
            update(Request)
            .where(
                Request.id == request_id,
                Request.status == RequestStatus.APPROVED,
                # NULL (no result yet) or JSON null: no marker either.
                func.coalesce(Request.result.has_key("creation_started_at"), False).is_(False),
            )
            .values(result=marker)
            .returning(Request.id)
            .execution_options(synchronize_session=False)
        )
        return (await self._session.scalars(statement)).one_or_none() is not None
