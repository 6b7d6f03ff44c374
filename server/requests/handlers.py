"""What the requests module asks of the modules that carry out approved requests.

The requests module owns the lifecycle: it takes the approved request's row lock, marks creations
before they reach Meta, retries, and completes, holds or fails the request (`server.requests.work`).
What a request *does* belongs to the module whose data it changes: accounts create ad accounts
and change spend caps, pixels create and share pixels, business managers connect client
businesses. Each of them implements `RequestHandler`, and the composition root registers a
factory per `RequestType` (`server.composition.request_handlers`), so requests imports none of them.

A handler runs inside the attempt's transaction (its repositories are bound to the attempt's unit
of work by its factory); it raises `WorkRefused` (server.business_managers.meta_steps) when the
work cannot be done, and the Meta errors of its calls propagate to the retry policy.
"""

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from server.requests.models import RequestType
from server.requests.schemas import RequestPayload, RequestResultSchema


class MetaIdTaken(Exception):
    """The Meta object just created or adopted got a row of ours meanwhile, for another request.

    Happens only when two requests for the same name in the same business, both on a later attempt,
    look for their orphan at the same time and pick the same one. Running the attempt again looks
    afresh: the taken object is then known here and left out.
    """

    retryable: ClassVar[bool] = True

    def __init__(self, meta_id: str) -> None:
        super().__init__(f"Meta object {meta_id} was taken by another request meanwhile")


class CreationMarker(BaseModel):
    """Kept in an APPROVED request's `result` from just before its first creation call to Meta.

    Written and committed before Meta is asked to create (RequestRepository.mark_creation_started),
    so a worker that dies after Meta created the object leaves it behind; completing or failing the
    request replaces it. `preexisting_meta_ids` are the business's objects of the request's name at
    that moment: someone else's, never adopted.
    """

    model_config = ConfigDict(frozen=True)

    creation_started_at: dt.datetime
    preexisting_meta_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, result: dict[str, object] | None) -> "CreationMarker | None":
        """The marker in a request's stored `result`; None when there is none."""
        if not isinstance(result, dict) or "creation_started_at" not in result:
            return None
        try:
            return cls.model_validate(result)
        except ValidationError:  # pragma: no cover - only the requests module writes markers
            return None


@dataclass(frozen=True)
class ApprovedWork:
    """One attempt at an approved request's work."""

    request_id: uuid.UUID
    workspace_id: uuid.UUID
    payload: RequestPayload
    # Creations: the marker written before the first call to create; None for other requests.
    marker: CreationMarker | None = None
    # Creations on a later attempt: an earlier one may have created the object on Meta without
    # recording it, so the handler first looks for it (same name, not preexisting, unknown here).
    adopt: bool = False


# A call to Meta, run outside any transaction, returning the ids of the business's objects with
# the name a creation request asks for.
type SameNameLookup = Callable[[], Awaitable[list[str]]]


class RequestHandler(Protocol):
    async def carry_out(self, work: ApprovedWork) -> RequestResultSchema:
        """Do the work (Meta calls, then the rows it brings about, audited); what it resulted in."""
        ...

    async def same_name_lookup(self, payload: RequestPayload) -> SameNameLookup:
        """Creations: resolve what the lookup needs (credentials) in this transaction and return the
        Meta call that lists the same-name objects. Only called for creation types."""
        ...


# The handler of a request type, built on the attempt's unit of work (of the root's type `U`).
type HandlerFactory[U] = Callable[[U], RequestHandler]
type RequestHandlers[U] = Mapping[RequestType, HandlerFactory[U]]

# The request types that create an object on Meta (and so are marked before their first attempt).
CREATION_TYPES = frozenset({RequestType.ACCOUNT_CREATION, RequestType.PIXEL_CREATION})


class StepFailure(Protocol):
    """How a step against Meta failed (server.business_managers.meta_steps.MetaStepFailure)."""

    @property
    def reason(self) -> str: ...
    @property
    def retry_after(self) -> float | None: ...
    @property
    def exhausted(self) -> bool:
        """Rate limits or transient errors outlasted the retry policy (worth another run later)."""
        ...


class StepRunner(Protocol):
    """Runs a step under the retry policy: its result, or how it failed (MetaSteps)."""

    async def run[T](self, step: Callable[[], Awaitable[T]], *, what: str) -> T | StepFailure: ...
