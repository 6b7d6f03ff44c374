import datetime as dt
import uuid
from typing import Any, Protocol

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import utcnow
from server.requests.models import Request, RequestStatus
from server.requests.schemas import RequestListRequestSchema


class IRequestRepository(Protocol):
    async def add(self, **values: Any) -> Request: ...
    async def get(self, request_id: uuid.UUID, *, workspace_id: uuid.UUID | None = None) -> Request | None: ...
    async def list_requests(
        self, query: RequestListRequestSchema, *, after: uuid.UUID | None, limit: int, newest_first: bool
    ) -> list[Request]: ...
    async def transition(
        self, request_id: uuid.UUID, *, from_status: RequestStatus, values: dict[str, Any]
    ) -> Request | None: ...
    async def waiting_expired_ids(self, *, now: dt.datetime, limit: int) -> list[uuid.UUID]: ...


class RequestRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def _readable(self, workspace_id: uuid.UUID | None) -> Select[Request]:
        """Every query starts here: narrowed to one workspace when the caller is scoped to one."""
        statement = select(Request)
        return statement if workspace_id is None else statement.where(Request.workspace_id == workspace_id)

    async def add(self, **values: Any) -> Request:
        request = Request(**values)
        self._session.add(request)
        await self._session.flush()
        return request

    async def get(self, request_id: uuid.UUID, *, workspace_id: uuid.UUID | None = None) -> Request | None:
        # populate_existing: a re-read after a lost race must show the row as it is now.
        statement = self._readable(workspace_id).where(Request.id == request_id)
        return await self._session.scalar(statement.execution_options(populate_existing=True))

    async def list_requests(
        self, query: RequestListRequestSchema, *, after: uuid.UUID | None, limit: int, newest_first: bool
    ) -> list[Request]:
        statement = self._readable(query.workspace_id).limit(limit)
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
