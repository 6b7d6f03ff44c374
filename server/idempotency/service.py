"""Idempotent creates, requests and approvals (AIP-155 `request_id`): the first call with a key does
the work and records what it created; a retry with the same key and payload gets that result again,
another payload REQUEST_ID_REUSED. The idempotency module owns `idempotency_keys`.
"""

import uuid
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from server.idempotency.exceptions import RequestIdReusedException
from server.idempotency.repository import IIdempotencyRepository
from server.idempotency.schemas import fingerprint


class IdempotencyService:
    """Runs a create once per idempotency key (the proto's AIP-155 `request_id`) within one transaction.

    Keys are scoped to the operation and the caller (user or API key). The key is claimed before
    the work, in the caller's transaction: a concurrent duplicate blocks on the claim until the
    first commits (then replays its result) or rolls back (then claims the key itself and does
    the work).
    """

    def __init__(self, repository: IIdempotencyRepository) -> None:
        self._repository = repository

    async def run_once[R](
        self,
        *,
        scope: str,
        caller: uuid.UUID | None,
        idempotency_key: str | None,
        payload: BaseModel,
        create: Callable[[], Awaitable[tuple[uuid.UUID, R]]],
        replay: Callable[[uuid.UUID], Awaitable[R]],
        resource_id: uuid.UUID | None = None,
    ) -> R:
        """`resource_id`: what `create` will return, when the caller knows it beforehand (the
        request an approval approves, the id a new row will get); the claim then records it and
        no second statement completes the key (it is in the same transaction as the work: both
        commit, or neither)."""
        if not idempotency_key:
            return (await create())[1]
        # Keys are the caller's own: another caller's retry with the same key is a different request.
        scope = f"{scope}:{caller}" if caller is not None else scope
        asked = fingerprint(payload)
        if await self._repository.claim(scope=scope, key=idempotency_key, fingerprint=asked, resource_id=resource_id):
            created_id, result = await create()
            if resource_id is None:
                await self._repository.complete(scope=scope, key=idempotency_key, resource_id=created_id)
            elif created_id != resource_id:
                raise RuntimeError(f"claimed {resource_id} for the key, but {created_id} was made")
            return result
        record = await self._repository.get(scope=scope, key=idempotency_key)
        if record is None or record.fingerprint != asked or record.resource_id is None:
            raise RequestIdReusedException()
        return await replay(record.resource_id)
