import re
import uuid
from typing import Any, Protocol

from server.idempotency.service import IdempotencyService
from server.pagination import Page, PageTokenCodec, paginate
from server.workspaces.exceptions import (
    WorkspaceArchivedException,
    WorkspaceEtagMismatchException,
    WorkspaceNotFoundException,
)
from server.workspaces.models import Workspace, WorkspaceStatus
from server.workspaces.repository import IWorkspaceRepository
from server.workspaces.schemas import (
    WorkspaceCreateRequestSchema,
    WorkspaceListRequestSchema,
    WorkspaceResponseSchema,
    WorkspaceUpdateRequestSchema,
)

_ETAG = re.compile(r'^W/"(\d{1,18})"$')


class IWorkspaceService(Protocol):
    async def create_workspace(
        self, data: WorkspaceCreateRequestSchema, *, request_id: str | None = None
    ) -> WorkspaceResponseSchema: ...
    async def get_workspace(self, workspace_id: uuid.UUID) -> WorkspaceResponseSchema: ...
    async def list_workspaces(self, query: WorkspaceListRequestSchema) -> Page[WorkspaceResponseSchema]: ...
    async def update_workspace(
        self, workspace_id: uuid.UUID, data: WorkspaceUpdateRequestSchema
    ) -> WorkspaceResponseSchema: ...
    async def delete_workspace(self, workspace_id: uuid.UUID, *, etag: str = "") -> WorkspaceResponseSchema: ...


class WorkspaceService:
    def __init__(
        self,
        *,
        repository: IWorkspaceRepository,
        idempotency: IdempotencyService,
        page_tokens: PageTokenCodec,
    ) -> None:
        self._repository = repository
        self._idempotency = idempotency
        self._page_tokens = page_tokens

    async def create_workspace(
        self, data: WorkspaceCreateRequestSchema, *, request_id: str | None = None
    ) -> WorkspaceResponseSchema:
        async def create() -> tuple[uuid.UUID, WorkspaceResponseSchema]:
            workspace = await self._repository.add(name=data.name, status=data.status)
            return workspace.id, _to_schema(workspace)

        return await self._idempotency.run_once(
            scope="workspaces.create",
            request_id=request_id,
            payload=data,
            create=create,
            replay=self.get_workspace,
        )

    async def get_workspace(self, workspace_id: uuid.UUID) -> WorkspaceResponseSchema:
        return _to_schema(await self._get(workspace_id))

    async def list_workspaces(self, query: WorkspaceListRequestSchema) -> Page[WorkspaceResponseSchema]:
        filters = {"status": query.status}
        after = self._page_tokens.decode(query.page_token, collection="workspaces", filters=filters)
        rows = await self._repository.list(
            status=query.status,
            after=uuid.UUID(after[0]) if after else None,
            limit=query.limit + 1,
        )
        return paginate(
            [_to_schema(row) for row in rows],
            limit=query.limit,
            codec=self._page_tokens,
            collection="workspaces",
            filters=filters,
            sort_key=lambda workspace: [str(workspace.id)],
        )

    async def update_workspace(
        self, workspace_id: uuid.UUID, data: WorkspaceUpdateRequestSchema
    ) -> WorkspaceResponseSchema:
        values: dict[str, Any] = {field: getattr(data, field) for field in data.update_mask}
        updated = await self._repository.update(
            workspace_id, expected_version=_version_of(data.etag, workspace_id), values=values
        )
        if updated is None:
            raise await self._why_not_updatable(workspace_id)
        return _to_schema(updated)

    async def delete_workspace(self, workspace_id: uuid.UUID, *, etag: str = "") -> WorkspaceResponseSchema:
        """Archive the workspace; archiving an archived workspace returns it unchanged."""
        expected = _version_of(etag, workspace_id)
        archived = await self._repository.update(
            workspace_id, expected_version=expected, values={"status": WorkspaceStatus.ARCHIVED}
        )
        if archived is not None:
            return _to_schema(archived)
        current = await self._get(workspace_id)
        if current.status is WorkspaceStatus.ARCHIVED and expected in (None, current.version):
            return _to_schema(current)
        raise await self._why_not_updatable(workspace_id)

    async def _get(self, workspace_id: uuid.UUID) -> Workspace:
        workspace = await self._repository.get(workspace_id)
        if workspace is None:
            raise WorkspaceNotFoundException(workspace_id)
        return workspace

    async def _why_not_updatable(self, workspace_id: uuid.UUID) -> Exception:
        """The conditional update matched nothing: say whether it was missing, archived or stale."""
        workspace = await self._get(workspace_id)
        if workspace.status is WorkspaceStatus.ARCHIVED:
            return WorkspaceArchivedException(workspace_id)
        return WorkspaceEtagMismatchException(workspace_id)


def _to_schema(workspace: Workspace) -> WorkspaceResponseSchema:
    return WorkspaceResponseSchema.model_validate(workspace)


def _version_of(etag: str, workspace_id: uuid.UUID) -> int | None:
    """The version an etag names, None for no etag; an etag we never issued is stale by definition."""
    if not etag:
        return None
    match = _ETAG.match(etag)
    if match is None:
        raise WorkspaceEtagMismatchException(workspace_id)
    return int(match.group(1))
