"""Creating an object on Meta for an approved request, safely when the attempt runs again.

Meta's creations are not idempotent, and a worker can die after Meta created the object but before
our transaction recorded it. The requests module therefore marks a creation request before its
first call to Meta, with the ids of the same-name objects the business has at that moment
(`server.requests.handlers.CreationMarker`). A later attempt adopts what an earlier one created:
an object of the requested name in the business, not among those ids, and known to no row of ours.
A first attempt never adopts (an object of that name belongs to someone else). Ad accounts and
pixels are created this one way; each describes its kind of object in a `MetaCreation`.
"""

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from server.business_managers.meta_steps import BusinessCredentials, MetaSteps

logger = structlog.get_logger("adplane.meta_creation")


class MetaObject(Protocol):
    @property
    def id(self) -> str: ...


@dataclass(frozen=True)
class MetaCreation[T: MetaObject]:
    """One kind of Meta object as a creation request asks for it (`what`: "ad account", for logs)."""

    what: str
    # token -> the business's objects that match the request (its name, and e.g. its currency).
    same_name: Callable[[str], Awaitable[Sequence[T]]]
    # token -> the object Meta created.
    create: Callable[[str], Awaitable[T]]
    # Meta ids -> those a row of ours has already (in any workspace).
    known: Callable[[list[str]], Awaitable[set[str]]]
    # Among several adoptable objects the first one Meta created: Meta's ids grow.
    order: Callable[[T], int]


async def same_name_ids[T: MetaObject](
    steps: MetaSteps, credentials: BusinessCredentials, creation: MetaCreation[T]
) -> list[str]:
    """The ids of the business's objects that match the request now (what the marker records)."""
    return [found.id for found in await steps.call(credentials, creation.same_name)]


async def create_or_adopt[T: MetaObject](
    steps: MetaSteps,
    credentials: BusinessCredentials,
    creation: MetaCreation[T],
    *,
    adopt: bool,
    preexisting: Collection[str],
) -> T:
    """The object an earlier attempt created and left unrecorded (`adopt`: a later attempt), or
    else a new one created now."""
    if adopt:
        adopted = await _adoptable(steps, credentials, creation, preexisting=set(preexisting))
        if adopted is not None:
            logger.info(f"adopting the {creation.what} an earlier attempt created", meta_id=adopted.id)
            return adopted
    return await steps.call(credentials, creation.create)


async def _adoptable[T: MetaObject](
    steps: MetaSteps, credentials: BusinessCredentials, creation: MetaCreation[T], *, preexisting: set[str]
) -> T | None:
    candidates = [found for found in await steps.call(credentials, creation.same_name) if found.id not in preexisting]
    known = await creation.known([found.id for found in candidates])
    unknown = [found for found in candidates if found.id not in known]
    return min(unknown, key=creation.order) if unknown else None
