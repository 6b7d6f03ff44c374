"""The one way background work talks to Meta: a business manager's credentials, the call with its
token, the retry policy, and what a failure means.

Every task and sync that calls Meta goes through `MetaSteps`:

- `credentials(business_manager)`: its Meta business and decrypted system-user token, or
  `WorkRefused` saying why it cannot be used (not ACTIVE, no token, a token no configured key
  decrypts); `credentials_of(repository, id)` looks the business manager up first, and
  `creation_credentials(repository, id, workspace_id=...)` also requires one the workspace may
  create in, holding it FOR KEY SHARE until the transaction ends;
- `call(credentials, lambda token: meta.xxx(..., token=token))`: one Graph call; a refused token
  (Meta code 190) becomes `TokenRejected`, which names the business manager and is never retried;
- `run(step, what=...)`: runs a step (which may make several calls and database reads) under the
  retry policy (`server.taskqueue.retry`, built in `retry_policy` below: the one place it is chosen) and
  returns its result, or a `MetaStepFailure` that says which of the four ways it failed:
  TOKEN_REFUSED (the business manager is flagged NEEDS_ATTENTION here, in a transaction of its own),
  UNUSABLE (`WorkRefused`), REFUSED (Meta refused for a reason retrying will not change) or
  EXHAUSTED (rate limits or transient errors outlasted the policy). Anything else (the database
  gone, a bug) propagates.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

import structlog
from cryptography.fernet import InvalidToken

from server.business_managers.models import BusinessManager, BusinessManagerStatus
from server.business_managers.repository import IBusinessManagerRepository
from server.clients.meta.exceptions import MetaError, MetaTokenError
from server.clients.meta.protocol import IMetaClient
from server.config import Settings
from server.crypto import SecretCipher
from server.taskqueue.retry import RetriesExhausted, RetryPolicy, Sleep, retrying

logger = structlog.get_logger("adplane.meta_steps")


def retry_policy(settings: Settings) -> RetryPolicy:
    """How long and how often a step against Meta is tried: the one place every task and sync gets it."""
    return RetryPolicy.from_settings(settings)


class WorkRefused(Exception):
    """The work cannot be done for a reason retrying will not change (on our side or Meta's)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class BusinessCredentials:
    """A business manager's Meta business and decrypted token, for the length of one task step."""

    business_manager_id: uuid.UUID
    meta_business_id: str
    name: str
    # The ciphertext the token came from: a later flag applies only if staff have not replaced it.
    encrypted_token: str = field(repr=False)
    token: str = field(repr=False)

    def describe(self) -> str:
        return f"business manager {self.name!r} (Meta business {self.meta_business_id})"


class TokenRejected(Exception):
    """Meta rejected a business manager's system-user token (code 190): a person must issue a new one."""

    def __init__(self, credentials: BusinessCredentials, error: MetaTokenError) -> None:
        # str(error) is Meta's message with its code, subcode and trace id; it never holds the token.
        super().__init__(f"Meta rejected the system-user token of {credentials.describe()}: {error}")
        self.credentials = credentials
        self.error = error


class FailureKind(StrEnum):
    TOKEN_REFUSED = "token_refused"  # noqa: S105 - Meta refused the business manager's token; it is flagged
    UNUSABLE = "unusable"  # WorkRefused: cannot be done now (on our side, or Meta said so for good)
    REFUSED = "refused"  # Meta refused the call (permissions, invalid parameters...)
    EXHAUSTED = "exhausted"  # rate limits or transient errors until the policy gave up


@dataclass(frozen=True)
class MetaStepFailure:
    """How a step against Meta failed, with a reason a person can act on."""

    kind: FailureKind
    reason: str
    # TOKEN_REFUSED: whether this step flagged the business manager (False: staff had set a new
    # token meanwhile, or it was flagged already).
    flagged: bool = False
    # EXHAUSTED: how long Meta asked to wait (its regain time, in seconds), when it said.
    retry_after: float | None = None

    @property
    def exhausted(self) -> bool:
        """Rate limits or transient errors outlasted the policy: worth another run later."""
        return self.kind is FailureKind.EXHAUSTED


type FlagTokenRefused = Callable[[BusinessCredentials], Awaitable[bool]]


class MetaSteps:
    """Credentials, calls, retries and failure handling for the steps of background work."""

    def __init__(
        self,
        meta: IMetaClient,
        *,
        cipher: SecretCipher,
        policy: RetryPolicy,
        flag_token_refused: FlagTokenRefused,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.meta = meta
        self._cipher = cipher
        self._policy = policy
        self._flag_token_refused = flag_token_refused
        self._sleep = sleep

    def credentials(self, business_manager: BusinessManager, *, require_active: bool = True) -> BusinessCredentials:
        """The business manager's Meta business and token; WorkRefused when it cannot be used now.

        `require_active=False` (the syncs) only needs a token that decrypts: the business manager
        sync reads NEEDS_ATTENTION ones too, to see whether their token works again.
        """
        described = f"business manager {business_manager.name!r} (Meta business {business_manager.meta_business_id})"
        if require_active and business_manager.status is not BusinessManagerStatus.ACTIVE:
            advice = (
                "staff must give it a new system-user token"
                if business_manager.status is BusinessManagerStatus.NEEDS_ATTENTION
                else "it is no longer in use"
            )
            raise WorkRefused(f"{described} is {business_manager.status.value}: {advice}")
        if business_manager.encrypted_token is None:
            raise WorkRefused(f"{described} has no system-user token")
        try:
            token = self._cipher.decrypt(business_manager.encrypted_token)
        except InvalidToken:
            # Its encryption key was taken out of TOKEN_ENCRYPTION_KEYS.
            logger.error("business manager token cannot be decrypted", business_manager_id=str(business_manager.id))
            raise WorkRefused(
                f"the system-user token of {described} cannot be decrypted; staff must set it again"
            ) from None
        return BusinessCredentials(
            business_manager_id=business_manager.id,
            meta_business_id=business_manager.meta_business_id,
            name=business_manager.name,
            encrypted_token=business_manager.encrypted_token,
            token=token,
        )

    async def credentials_of(
        self, business_managers: IBusinessManagerRepository, business_manager_id: uuid.UUID
    ) -> BusinessCredentials:
        """`credentials` of the business manager with this id; WorkRefused when there is none."""
        business_manager = await business_managers.get(business_manager_id)
        if business_manager is None:
            raise WorkRefused(f"business manager {business_manager_id} does not exist")
        return self.credentials(business_manager)

    async def creation_credentials(
        self, business_managers: IBusinessManagerRepository, business_manager_id: uuid.UUID, *, workspace_id: uuid.UUID
    ) -> BusinessCredentials:
        """The credentials of the business manager a creation lands in, which must be ACTIVE and
        usable by the workspace; WorkRefused (saying why) when it is not.

        Its row stays locked FOR KEY SHARE (`get_usable`) until the transaction ends, so from
        before the Meta call to the insert: a concurrent DeleteBusinessManager (FOR UPDATE) waits,
        then sees the new row and refuses, and cannot archive it between Meta's creation and ours.
        The lock does not conflict with plain UPDATEs (the syncs) nor with account inserts; only
        the FOR UPDATE lockers (delete, an update through the RPC, flagging) wait, for at most the
        Meta calls of this attempt, each bounded by the HTTP timeout.
        """
        business_manager = await business_managers.get_usable(business_manager_id, workspace_id=workspace_id)
        if business_manager is None:
            # Says why when it is missing, not ACTIVE or without a token...
            await self.credentials_of(business_managers, business_manager_id)
            # ...otherwise it is a client business manager of another workspace.
            raise WorkRefused(f"business manager {business_manager_id} cannot be used by workspace {workspace_id}")
        return self.credentials(business_manager)

    async def call[T](self, credentials: BusinessCredentials, call: Callable[[str], Awaitable[T]]) -> T:
        """Call Meta with the business manager's token; a refused token becomes TokenRejected."""
        try:
            return await call(credentials.token)
        except MetaTokenError as error:
            raise TokenRejected(credentials, error) from error

    async def run[T](self, step: Callable[[], Awaitable[T]], *, what: str) -> T | MetaStepFailure:
        """Run `step` under the retry policy; its result, or how it failed (see the module doc).

        `what` names the step in log lines (never put a token in it).
        """
        try:
            return await retrying(step, policy=self._policy, what=what, sleep=self._sleep)
        except TokenRejected as rejected:
            flagged = await self.flag(rejected)
            return MetaStepFailure(FailureKind.TOKEN_REFUSED, str(rejected), flagged=flagged)
        except WorkRefused as refused:
            return MetaStepFailure(FailureKind.UNUSABLE, refused.reason)
        except RetriesExhausted as exhausted:
            return MetaStepFailure(
                FailureKind.EXHAUSTED,
                f"gave up after {exhausted.attempts} attempts; last error: {exhausted.last_error}",
                retry_after=exhausted.retry_after,
            )
        except MetaError as error:
            return MetaStepFailure(FailureKind.REFUSED, f"Meta refused the work: {error}")

    async def flag(self, rejected: TokenRejected) -> bool:
        """Mark the business manager whose token Meta refused NEEDS_ATTENTION (audited by the
        business managers service); False when it changed meanwhile and was left alone."""
        flagged = await self._flag_token_refused(rejected.credentials)
        if flagged:
            logger.warning(
                "business manager needs a new system-user token",
                business_manager_id=str(rejected.credentials.business_manager_id),
                meta_code=rejected.error.code,
                meta_subcode=rejected.error.subcode,
            )
        return flagged
