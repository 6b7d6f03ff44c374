"""Business managers (Meta business portfolios): the agency's platform ones, managed by staff with
their system-user token encrypted at rest, and workspaces' client ones, connected through a request
staff approve. The business_managers module owns `business_managers`; it also holds the toolkit
every background job talks to Meta through (`meta_steps.py`, `meta_creation.py`, `meta_sync.py`).
"""

import hmac
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from server.audit_logs.service import IAuditTrail
from server.auth.principal import Principal
from server.business_managers.exceptions import (
    BusinessManagerArchivedException,
    BusinessManagerEtagMismatchException,
    BusinessManagerExistsException,
    BusinessManagerInUseException,
    BusinessManagerNotFoundException,
)
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.business_managers.repository import IBusinessManagerRepository
from server.business_managers.schemas import (
    BusinessManagerCreateRequestSchema,
    BusinessManagerListRequestSchema,
    BusinessManagerResponseSchema,
    BusinessManagerUpdateRequestSchema,
    WorkspaceBusinessManagerListRequestSchema,
)
from server.crypto import SecretCipher
from server.etags import version_of
from server.idempotency.exceptions import RequestIdReusedException
from server.idempotency.service import IdempotencyService
from server.pagination import Page, PageTokenCodec
from server.requests.schemas import BusinessManagerConnectionPayload, RequestResponseSchema
from server.requests.service import IRequestService
from server.workspaces.exceptions import WorkspaceArchivedException, WorkspaceNotFoundException
from server.workspaces.models import WorkspaceStatus

ENTITY = "business_manager"


class IBusinessManagerHolder(Protocol):
    """A module whose objects live in business managers (ad accounts, pixels): a business manager
    holding any of them cannot be archived. Implemented by those modules' repositories and wired in
    the composition root, so this module needs to know none of them."""

    async def holds_objects_in(self, business_manager_id: uuid.UUID) -> bool:
        """Whether any of its objects (whatever their status) lives in the business manager."""
        ...


class WorkspaceState(Protocol):
    @property
    def status(self) -> WorkspaceStatus: ...


class IWorkspaceLookup(Protocol):
    """The workspaces client business managers belong to (the workspaces module's repository)."""

    async def get(self, workspace_id: uuid.UUID) -> WorkspaceState | None: ...


class IBusinessManagerService(Protocol):
    async def create_business_manager(
        self, data: BusinessManagerCreateRequestSchema, *, actor: Principal, idempotency_key: str | None = None
    ) -> BusinessManagerResponseSchema: ...
    async def get_business_manager(self, business_manager_id: uuid.UUID) -> BusinessManagerResponseSchema: ...
    async def list_business_managers(
        self, query: BusinessManagerListRequestSchema
    ) -> Page[BusinessManagerResponseSchema]: ...
    async def update_business_manager(
        self, business_manager_id: uuid.UUID, data: BusinessManagerUpdateRequestSchema
    ) -> BusinessManagerResponseSchema: ...
    async def delete_business_manager(
        self, business_manager_id: uuid.UUID, *, etag: str = ""
    ) -> BusinessManagerResponseSchema: ...
    async def request_connection(
        self,
        workspace_id: uuid.UUID,
        payload: BusinessManagerConnectionPayload,
        *,
        actor: Principal,
        idempotency_key: str | None = None,
    ) -> RequestResponseSchema: ...
    async def list_workspace_business_managers(
        self, workspace_id: uuid.UUID, query: WorkspaceBusinessManagerListRequestSchema
    ) -> Page[BusinessManagerResponseSchema]: ...
    async def flag_token_refused(self, business_manager_id: uuid.UUID, *, token_ciphertext: str) -> bool: ...


class BusinessManagerService:
    """Platform business managers (staff) and client connection requests (workspaces).

    The system-user token is write-only: it is encrypted before it reaches the repository, and
    neither responses nor audit snapshots (both BusinessManagerResponseSchema) nor error messages
    carry it.
    """

    def __init__(
        self,
        *,
        repository: IBusinessManagerRepository,
        holders: Sequence[IBusinessManagerHolder],
        workspaces: IWorkspaceLookup,
        requests: IRequestService,
        audit: IAuditTrail,
        cipher: SecretCipher,
        idempotency: IdempotencyService,
        page_tokens: PageTokenCodec,
    ) -> None:
        self._repository = repository
        self._holders = holders
        self._workspaces = workspaces
        self._requests = requests
        self._audit = audit
        self._cipher = cipher
        self._idempotency = idempotency
        self._page_tokens = page_tokens

    async def create_business_manager(
        self, data: BusinessManagerCreateRequestSchema, *, actor: Principal, idempotency_key: str | None = None
    ) -> BusinessManagerResponseSchema:
        """Add a platform business manager, ACTIVE and not verified until the sync job says otherwise.

        The idempotency fingerprint covers the Meta id and the name only (the schema keeps the token
        out of its dumps). A retry is checked against the stored token instead, as long as the
        business manager has not changed since: the same idempotency key with another token is then
        still REQUEST_ID_REUSED.
        """
        token = data.system_user_token.get_secret_value()

        async def create() -> tuple[uuid.UUID, BusinessManagerResponseSchema]:
            business_manager = await self._repository.add(
                meta_business_id=data.meta_business_id,
                name=data.name,
                ownership=BusinessManagerOwnership.PLATFORM,
                workspace_id=None,
                status=BusinessManagerStatus.ACTIVE,
                verification_status=BusinessVerificationStatus.NOT_VERIFIED,
                encrypted_token=self._cipher.encrypt(token),
            )
            created = to_schema(business_manager)
            await self._audit.record(
                entity_type=ENTITY, entity_id=business_manager.id, action="create", workspace_id=None, after=created
            )
            return business_manager.id, created

        async def replay(business_manager_id: uuid.UUID) -> BusinessManagerResponseSchema:
            business_manager = await self._get(business_manager_id)
            # Version 1: untouched since it was created, so its token is the one first sent.
            if business_manager.version == 1 and business_manager.encrypted_token is not None:
                stored = self._cipher.decrypt(business_manager.encrypted_token)
                if not hmac.compare_digest(stored.encode(), token.encode()):
                    raise RequestIdReusedException()
            return to_schema(business_manager)

        return await self._idempotency.run_once(
            scope="business_managers.create",
            caller=actor.id,
            idempotency_key=idempotency_key,
            payload=data,
            create=create,
            replay=replay,
        )

    async def get_business_manager(self, business_manager_id: uuid.UUID) -> BusinessManagerResponseSchema:
        return to_schema(await self._get(business_manager_id))

    async def list_business_managers(
        self, query: BusinessManagerListRequestSchema
    ) -> Page[BusinessManagerResponseSchema]:
        return await self._page_tokens.page(
            query,
            "business_managers",
            fetch=lambda after, limit: self._repository.list_business_managers(
                ownership=query.ownership,
                status=query.status,
                workspace_id=query.workspace_id,
                after=after,
                limit=limit,
            ),
            convert=to_schema,
        )

    async def update_business_manager(
        self, business_manager_id: uuid.UUID, data: BusinessManagerUpdateRequestSchema
    ) -> BusinessManagerResponseSchema:
        """Rename and/or set a new token; a new token also makes a NEEDS_ATTENTION one ACTIVE again."""
        expected = _version_of(data.etag, business_manager_id)
        current = await self._locked(business_manager_id)
        if current.status is BusinessManagerStatus.ARCHIVED:
            raise BusinessManagerArchivedException(business_manager_id)
        if expected is not None and expected != current.version:
            raise BusinessManagerEtagMismatchException(business_manager_id)
        before = to_schema(current)
        values: dict[str, Any] = {}
        if "name" in data.update_mask:
            values["name"] = data.name
        if "system_user_token" in data.update_mask and data.system_user_token is not None:
            values["encrypted_token"] = self._cipher.encrypt(data.system_user_token.get_secret_value())
            # Not archived (checked above under the lock), so ACTIVE or NEEDS_ATTENTION: either
            # way a fresh token makes it usable; the sync job flags it again if Meta refuses it.
            values["status"] = BusinessManagerStatus.ACTIVE
        after = to_schema(await self._repository.update(business_manager_id, values=values))
        await self._audit.record(
            entity_type=ENTITY,
            entity_id=business_manager_id,
            action="update",
            workspace_id=current.workspace_id,
            before=before,
            after=after,
        )
        return after

    async def delete_business_manager(
        self, business_manager_id: uuid.UUID, *, etag: str = ""
    ) -> BusinessManagerResponseSchema:
        """Archive the business manager and forget its token; an archived one is returned unchanged.

        Refused while any ad account or pixel lives in it. The row lock taken here, and the key-share
        lock `get_usable` takes, keep an account or pixel from landing in it meanwhile.
        """
        expected = _version_of(etag, business_manager_id)
        current = await self._locked(business_manager_id)
        if expected is not None and expected != current.version:
            raise BusinessManagerEtagMismatchException(business_manager_id)
        if current.status is BusinessManagerStatus.ARCHIVED:
            return to_schema(current)
        for holder in self._holders:
            if await holder.holds_objects_in(business_manager_id):
                raise BusinessManagerInUseException(business_manager_id)
        before = to_schema(current)
        after = to_schema(
            await self._repository.update(
                business_manager_id, values={"status": BusinessManagerStatus.ARCHIVED, "encrypted_token": None}
            )
        )
        await self._audit.record(
            entity_type=ENTITY,
            entity_id=business_manager_id,
            action="delete",
            workspace_id=current.workspace_id,
            before=before,
            after=after,
        )
        return after

    async def request_connection(
        self,
        workspace_id: uuid.UUID,
        payload: BusinessManagerConnectionPayload,
        *,
        actor: Principal,
        idempotency_key: str | None = None,
    ) -> RequestResponseSchema:
        """Queue a request to connect the workspace's own Meta business (staff approve it)."""
        workspace = await self._workspaces.get(workspace_id)
        if workspace is None:
            raise WorkspaceNotFoundException(workspace_id)
        if workspace.status is WorkspaceStatus.ARCHIVED:
            raise WorkspaceArchivedException(workspace_id)
        if await self._repository.live_meta_business_id_exists(payload.meta_business_id):
            raise BusinessManagerExistsException(payload.meta_business_id)
        return await self._requests.submit(workspace_id, payload, actor=actor, idempotency_key=idempotency_key)

    async def list_workspace_business_managers(
        self, workspace_id: uuid.UUID, query: WorkspaceBusinessManagerListRequestSchema
    ) -> Page[BusinessManagerResponseSchema]:
        """The workspace's own live client business managers and the platform ones it is offered."""
        if await self._workspaces.get(workspace_id) is None:
            raise WorkspaceNotFoundException(workspace_id)
        # The workspace is part of the filters, so one workspace's page token is useless to another.
        return await self._page_tokens.page(
            query,
            "workspace_business_managers",
            filters={"workspace_id": str(workspace_id)},
            fetch=lambda after, limit: self._repository.list_for_workspace(workspace_id, after=after, limit=limit),
            convert=to_schema,
        )

    async def flag_token_refused(self, business_manager_id: uuid.UUID, *, token_ciphertext: str) -> bool:
        """Meta refused the business manager's system-user token (code 190): make it
        NEEDS_ATTENTION (audited, action "token_refused"); returns whether it changed.

        The one way the workers flag a business manager. `token_ciphertext` is the stored
        ciphertext of the token Meta refused: only an ACTIVE business manager still holding it
        changes, under its row lock. Staff may have set a new token while Meta was being called
        (not tried yet, so not refused), or archived it or flagged it already.
        """
        current = await self._repository.lock(business_manager_id)
        if (
            current is None
            or current.status is not BusinessManagerStatus.ACTIVE
            or current.encrypted_token != token_ciphertext
        ):
            return False
        before = to_schema(current)
        after = to_schema(
            await self._repository.update(business_manager_id, values={"status": BusinessManagerStatus.NEEDS_ATTENTION})
        )
        await self._audit.record(
            entity_type=ENTITY,
            entity_id=business_manager_id,
            action="token_refused",
            workspace_id=current.workspace_id,
            before=before,
            after=after,
        )
        return True

    async def _get(self, business_manager_id: uuid.UUID) -> BusinessManager:
        business_manager = await self._repository.get(business_manager_id)
        if business_manager is None:
            raise BusinessManagerNotFoundException(business_manager_id)
        return business_manager

    async def _locked(self, business_manager_id: uuid.UUID) -> BusinessManager:
        business_manager = await self._repository.lock(business_manager_id)
        if business_manager is None:
            raise BusinessManagerNotFoundException(business_manager_id)
        return business_manager


def to_schema(business_manager: BusinessManager) -> BusinessManagerResponseSchema:
    """The business manager as responses and audit snapshots show it (never its token)."""
    return BusinessManagerResponseSchema(
        id=business_manager.id,
        meta_business_id=business_manager.meta_business_id,
        name=business_manager.name,
        ownership=business_manager.ownership,
        workspace_id=business_manager.workspace_id,
        status=business_manager.status,
        verification_status=business_manager.verification_status,
        has_system_user_token=business_manager.encrypted_token is not None,
        version=business_manager.version,
        created_at=business_manager.created_at,
        updated_at=business_manager.updated_at,
    )


def _version_of(etag: str, business_manager_id: uuid.UUID) -> int | None:
    return version_of(etag, mismatch=lambda: BusinessManagerEtagMismatchException(business_manager_id))
