"""The composition root: the one place that builds services and wires their dependencies.

`Infrastructure` is built once per process at start-up (engine, codecs). Each RPC opens a
`UnitOfWork`: one session, one transaction, and the services built on it.
"""

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, cast

import asyncpg
import structlog
from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.accounts.repository import AccountRepository
from server.accounts.request_work import AccountRequestWork
from server.accounts.service import AccountService, IAccountService
from server.api_keys.repository import ApiKeyRepository
from server.api_keys.service import ApiKeyService, IApiKeyService
from server.audit_logs.partitions import AuditLogPartitions
from server.audit_logs.repository import AuditLogRepository
from server.audit_logs.service import AuditLogService, AuditTrail, IAuditLogService, IAuditTrail
from server.auth.passwords import Passwords
from server.auth.principal import current_principal_or_none
from server.auth.repository import StandingRepository
from server.auth.resolver import PrincipalResolver
from server.auth.standing_cache import StandingCache
from server.auth.throttle import LoginThrottle
from server.auth.tokens import TokenIssuer
from server.business_managers.meta_steps import BusinessCredentials, MetaSteps, retry_policy
from server.business_managers.repository import BusinessManagerRepository
from server.business_managers.request_work import BusinessManagerRequestWork
from server.business_managers.service import BusinessManagerService, IBusinessManagerService
from server.clients.meta.protocol import IMetaClient
from server.config import DatabasePooler, Settings
from server.crypto import SecretCipher
from server.db import create_engine, create_sessionmaker, direct_connect_arguments, pooled_connect_arguments
from server.exports.repository import ExportRepository
from server.exports.service import ExportService, IExportService
from server.exports.storage import IExportStorage, S3ExportStorage
from server.idempotency.repository import IdempotencyRepository
from server.idempotency.service import IdempotencyService
from server.outages import is_outage
from server.outbox.repository import IOutbox, OutboxRepository
from server.pagination import PageTokenCodec
from server.pixels.repository import PixelRepository
from server.pixels.request_work import PixelRequestWork
from server.pixels.service import IPixelService, PixelService
from server.read_pool import DirectTransaction, ReadPool
from server.read_replica import ReplicaRouter
from server.redis_client import connect_redis
from server.requests.events import IRequestEvents, RequestEventPublisher, RequestEventRecorder
from server.requests.handlers import HandlerFactory, RequestHandler
from server.requests.models import RequestType
from server.requests.repository import RequestRepository
from server.requests.service import IRequestService, RequestService
from server.requests.watch import RequestEventHub
from server.requests.work import RequestWork
from server.signin.repository import RefreshTokenRepository
from server.signin.service import ISigninService, SigninService
from server.users.repository import RoleRepository, UserRepository
from server.users.service import IUserService, UserService
from server.workspaces.repository import WorkspaceMemberRepository, WorkspaceRepository
from server.workspaces.service import IWorkspaceService, WorkspaceService


@dataclass(frozen=True)
class ReplicaReads:
    """A streaming replica (DATABASE_READ_URL) for read-only units: its own read pool (falling back
    to the primary's when the replica is out of reach) and autocommit sessions."""

    router: ReplicaRouter
    read_pool: ReadPool
    engine: AsyncEngine
    read_sessions: async_sessionmaker[AsyncSession]

    @classmethod
    def build(cls, settings: Settings, primary: ReadPool, redis: Redis | None) -> "ReplicaReads":
        # The lag probe's own connection: a probe must not fall back to the primary.
        probe = ReadPool(pooled_connect_arguments(settings, settings.database_read_url), size=1)
        router = ReplicaRouter(
            primary,
            probe,
            max_lag_seconds=settings.database_read_max_lag_seconds,
            check_interval_seconds=settings.database_read_check_interval_seconds,
            redis=redis,
        )
        # (create_engine and the pools declare their connections to the limit metric themselves.)
        engine = create_engine(settings, url=settings.database_read_url).execution_options(isolation_level="AUTOCOMMIT")

        def skip_on_outage(context: Any) -> None:
            if context.is_disconnect or is_outage(context.original_exception):
                router.skip()

        event.listen(engine.sync_engine, "handle_error", skip_on_outage)
        return cls(
            router=router,
            # Reads the replica fails go to the primary; the replica is skipped until its next probe.
            read_pool=ReadPool(
                pooled_connect_arguments(settings, settings.database_read_url),
                size=settings.database_read_pool_size,
                unnamed=_behind_pgbouncer(settings),
                fallback=primary,
                on_outage=router.skip,
            ),
            engine=engine,
            read_sessions=create_sessionmaker(engine),
        )

    async def close(self) -> None:
        await self.router.close()
        await self.read_pool.close()
        await self.engine.dispose()


def _behind_pgbouncer(settings: Settings) -> bool:
    return settings.database_pooler is DatabasePooler.PGBOUNCER


def _caller() -> str | None:
    """Whose reads and writes these are, for read-your-writes (server.read_replica)."""
    principal = current_principal_or_none()
    return None if principal is None else f"{principal.kind.value}:{principal.id}"


@dataclass(frozen=True)
class Infrastructure:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # Autocommit sessions for reads: one round trip per statement, no BEGIN/COMMIT around it.
    read_sessions: async_sessionmaker[AsyncSession]
    # The same autocommit mode for connections: the principal resolver reads callers' standing here.
    read_engine: AsyncEngine
    # asyncpg connections for the hot reads of read-only units of work (Gets and Lists).
    read_pool: ReadPool
    page_tokens: PageTokenCodec
    tokens: TokenIssuer
    passwords: Passwords
    # None when REDIS_URL is unset (tests of single modules); production requires it.
    redis: Redis | None
    login_throttle: LoginThrottle
    # Callers' standing, kept per process and emptied by the database's notifications.
    standing_cache: StandingCache
    cipher: SecretCipher
    export_storage: IExportStorage
    # Request changes: appended to the Redis stream after commit, read by this process's watches.
    request_event_publisher: RequestEventPublisher | None
    request_events: RequestEventHub
    # The read replica (DATABASE_READ_URL), None without one.
    replica: ReplicaReads | None = None

    @classmethod
    def build(cls, settings: Settings) -> "Infrastructure":
        engine = create_engine(settings)
        read_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        sessions = create_sessionmaker(engine)
        standing_cache = StandingCache()
        standing_cache.attach(engine, sessions, partial(asyncpg.connect, **direct_connect_arguments(settings)))
        redis = connect_redis(settings) if settings.redis_configured else None
        read_pool = ReadPool(
            pooled_connect_arguments(settings),
            size=settings.database_read_pool_size,
            unnamed=_behind_pgbouncer(settings),
        )
        watch_retention = dt.timedelta(seconds=settings.watch_retention_seconds)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            read_sessions=create_sessionmaker(read_engine),
            read_engine=read_engine,
            read_pool=read_pool,
            replica=ReplicaReads.build(settings, read_pool, redis) if settings.database_read_url else None,
            standing_cache=standing_cache,
            page_tokens=PageTokenCodec(settings.secret_key.get_secret_value()),
            tokens=TokenIssuer(
                secret_key=settings.secret_key.get_secret_value(),
                access_ttl=dt.timedelta(seconds=settings.access_token_ttl_seconds),
                refresh_ttl=dt.timedelta(seconds=settings.refresh_token_ttl_seconds),
            ),
            passwords=Passwords(),
            cipher=SecretCipher.from_settings(settings),
            export_storage=S3ExportStorage.from_settings(settings),
            redis=redis,
            request_event_publisher=RequestEventPublisher(redis, retention=watch_retention) if redis else None,
            request_events=RequestEventHub(
                redis,
                buffer_size=settings.watch_buffer_size,
                retention=watch_retention,
                outage=dt.timedelta(seconds=settings.watch_outage_seconds),
            ),
            login_throttle=LoginThrottle.from_settings(redis, settings),
        )

    @asynccontextmanager
    async def unit_of_work(
        self, *, read_only: bool = False, direct: bool = False, primary: bool = False
    ) -> AsyncIterator["UnitOfWork"]:
        """One transaction: committed when the block ends normally, rolled back on an exception.

        `read_only` units (Get and List RPCs) run each statement on its own in autocommit mode,
        which saves the BEGIN and COMMIT round trips; they must not write. Their hot reads run on
        the read pool; an ORM session (autocommit too) is made only if something asks for one.

        `direct` units (the hot writes: RequestAccount, ApproveRequest) run their transaction on an
        asyncpg connection of the read pool, without SQLAlchemy: the repositories they use run their
        statements' direct forms there, and any statement without one fails loudly (it would run
        outside the transaction). bench/README.md, "The write path", has the figures.

        With a replica (DATABASE_READ_URL), read-only units read it unless `primary` (or the caller
        has a write the replica has not replayed: server.read_replica); writes are remembered.
        """
        if direct:
            async with self.read_pool.transaction() as transaction:
                direct_unit = UnitOfWork(self, direct=transaction)
                yield direct_unit
            await self._remember_write()
            await direct_unit.run_after_commit()
            return
        if read_only:
            replica = self.replica
            if replica is not None and (primary or not await replica.router.replica_for(_caller())):
                replica = None
            unit = UnitOfWork(self, read_only=True, replica=replica)
            try:
                yield unit
            except Exception as error:
                if replica is not None and is_outage(error):
                    replica.router.skip()  # out of reach (connecting or mid-statement): the primary, until a probe says
                raise
            finally:
                await unit.close()
            return
        async with self.sessions() as session:
            async with session.begin():
                uow = UnitOfWork(self, session)
                yield uow
            await self._remember_write()
            await uow.run_after_commit()

    async def _remember_write(self) -> None:
        """After a commit: the caller reads the primary until the replica has replayed it."""
        if self.replica is not None and (caller := _caller()) is not None:
            await self.replica.router.remember_write(caller)

    def meta_steps(
        self, meta: IMetaClient, settings: Settings, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> MetaSteps:
        """The Meta toolkit of background work (server.business_managers.meta_steps): a refused token
        flags its business manager in a transaction of its own."""

        async def flag_token_refused(credentials: BusinessCredentials) -> bool:
            async with self.unit_of_work() as uow:
                return await uow.business_managers.flag_token_refused(
                    credentials.business_manager_id, token_ciphertext=credentials.encrypted_token
                )

        return MetaSteps(
            meta,
            cipher=self.cipher,
            policy=retry_policy(settings),
            flag_token_refused=flag_token_refused,
            sleep=sleep,
        )

    def request_work(
        self, meta: IMetaClient, settings: Settings, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> "RequestWork[UnitOfWork]":
        """Carrying out approved requests: the requests module's lifecycle around the work of the
        module that owns each request type."""
        steps = self.meta_steps(meta, settings, sleep=sleep)
        return RequestWork(
            self.unit_of_work,
            steps,
            request_handlers(steps),
            retry_deadline=dt.timedelta(seconds=settings.task_retry_deadline_seconds),
        )

    def principal_resolver(self) -> PrincipalResolver:
        """Callers' standing, read on the autocommit engine and kept in the standing cache."""
        return PrincipalResolver(StandingRepository(self.read_engine), cache=self.standing_cache)

    async def open_pools(self) -> None:
        """Open the connection pools to their resting size (DATABASE_POOL_SIZE connections and the
        read pool's) and the standing cache's listening connection. A server does this before it
        serves: the first burst of calls then finds connections instead of each opening one
        (bench/README.md, "Measurements behind the code")."""
        await self.read_pool.open()
        if self.replica is not None:
            await self.replica.router.start()
        # Checked out together (so the pool opens that many), returned when the stack closes; the
        # task group cancels the rest if one fails, before the stack returns what was opened.
        async with AsyncExitStack() as opened, asyncio.TaskGroup() as group:
            for _ in range(self.settings.database_pool_size):
                group.create_task(opened.enter_async_context(self.engine.connect()))
        await self.standing_cache.start()

    async def close(self) -> None:
        await self.standing_cache.close()
        if self.replica is not None:
            await self.replica.close()
        await self.read_pool.close()
        await self.engine.dispose()
        await self.export_storage.close()
        await self.request_events.close()
        if self.redis is not None:
            await self.redis.aclose()


def request_handlers(steps: MetaSteps) -> "dict[RequestType, HandlerFactory[UnitOfWork]]":
    """Which module carries out each type of approved request, on the attempt's unit of work."""

    def accounts(uow: "UnitOfWork") -> RequestHandler:
        return AccountRequestWork(
            steps,
            accounts=AccountRepository(uow.session),
            business_managers=BusinessManagerRepository(uow.session),
            audit=uow.audit,
        )

    def pixels(uow: "UnitOfWork") -> RequestHandler:
        return PixelRequestWork(
            steps,
            pixels=PixelRepository(uow.session),
            accounts=AccountRepository(uow.session),
            business_managers=BusinessManagerRepository(uow.session),
            audit=uow.audit,
        )

    def business_managers(uow: "UnitOfWork") -> RequestHandler:
        return BusinessManagerRequestWork(
            steps, business_managers=BusinessManagerRepository(uow.session), audit=uow.audit
        )

    return {
        RequestType.ACCOUNT_CREATION: accounts,
        RequestType.SPEND_CAP_CHANGE: accounts,
        RequestType.PIXEL_CREATION: pixels,
        RequestType.PIXEL_SHARE: pixels,
        RequestType.BUSINESS_MANAGER_CONNECTION: business_managers,
    }


def _deferred[T](build: Callable[[], T]) -> T:
    """What `build()` returns, built when first used. A unit's services get their collaborators at
    construction, and a call uses few of them: a Get builds neither the audit trail, nor the
    services it could call, nor (read-only) an ORM session."""
    return cast(T, _Deferred(build))


def _was_built(value: object) -> bool:
    return not isinstance(value, _Deferred) or value._deferred_target is not None


def _no_session() -> AsyncSession:
    raise RuntimeError(
        "a direct unit of work (asyncpg) has no ORM session: give this statement a direct form in its repository"
    )


class _Deferred:
    # Names no proxied object has: every other attribute is the built object's.
    __slots__ = ("_deferred_build", "_deferred_target")

    def __init__(self, build: Callable[[], object]) -> None:
        self._deferred_build = build
        self._deferred_target: object | None = None

    def __getattr__(self, name: str) -> Any:
        target = self._deferred_target
        if target is None:
            target = self._deferred_target = self._deferred_build()
        return getattr(target, name)


class UnitOfWork:
    """The services of one transaction, built lazily on its session; or, read-only, of reads that
    each stand alone (hot ones on the read pool, others on an autocommit session made if asked)."""

    def __init__(
        self,
        infrastructure: Infrastructure,
        session: AsyncSession | None = None,
        *,
        read_only: bool = False,
        direct: DirectTransaction | None = None,
        replica: ReplicaReads | None = None,
    ) -> None:
        """`replica`: where a read-only unit reads (None: the primary)."""
        if (session is None) != (read_only or direct is not None) or (read_only and direct is not None):
            raise ValueError("a unit of work has a session, or is read-only, or direct")
        self._infrastructure = infrastructure
        self._replica = replica
        self._session = session
        self._read_only = read_only
        self._direct = direct
        self._after_commit: list[Callable[[], Awaitable[None]]] = []

    @property
    def session(self) -> AsyncSession:
        """The unit's ORM session; a read-only unit's is an autocommit one, made when a statement
        first needs it (its hot reads do not). A direct unit has none: a statement that would need
        it fails, rather than run outside the unit's transaction."""
        if self._session is None:
            if self._direct is not None:
                self._session = _deferred(_no_session)
            else:
                self._session = _deferred((self._replica or self._infrastructure).read_sessions)
        return self._session

    @property
    def _reader(self) -> ReadPool | None:
        if not self._read_only:
            return None
        return (self._replica or self._infrastructure).read_pool

    async def close(self) -> None:
        """End a read-only unit (a transactional unit's session is closed by its owner)."""
        if self._read_only and self._session is not None and _was_built(self._session):
            await self._session.close()

    def after_commit(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` once the transaction has committed (never if it rolls back)."""
        self._after_commit.append(action)

    async def run_after_commit(self) -> None:
        actions, self._after_commit = self._after_commit, []
        for action in actions:
            await action()

    @cached_property
    def audit(self) -> IAuditTrail:
        """Audit entries on behalf of the RPC's caller (none for workers), under its request id."""
        return AuditTrail(
            AuditLogRepository(self.session, direct=self._direct),
            actor=current_principal_or_none(),
            trace_id=structlog.contextvars.get_contextvars().get("request_id"),
        )

    @cached_property
    def outbox(self) -> IOutbox:
        return OutboxRepository(self.session, direct=self._direct)

    @cached_property
    def idempotency(self) -> IdempotencyService:
        return IdempotencyService(IdempotencyRepository(self.session, direct=self._direct))

    @cached_property
    def workspaces(self) -> IWorkspaceService:
        return WorkspaceService(
            repository=WorkspaceRepository(self.session),
            members=WorkspaceMemberRepository(self.session),
            member_access=_deferred(lambda: self.accounts),
            users=UserRepository(self.session),
            audit=_deferred(lambda: self.audit),
            outbox=_deferred(lambda: self.outbox),
            idempotency=_deferred(lambda: self.idempotency),
            page_tokens=self._infrastructure.page_tokens,
        )

    @cached_property
    def roles(self) -> RoleRepository:
        return RoleRepository(self.session)

    # The repositories background work uses directly (syncs, relays, Meta-side tasks: set-based
    # work whose rules live in each module's own tasks/sync code). Built here, like every
    # service, so no code outside the composition root and the repositories handles a session.

    @cached_property
    def account_repository(self) -> AccountRepository:
        return AccountRepository(self.session)

    @cached_property
    def pixel_repository(self) -> PixelRepository:
        return PixelRepository(self.session)

    @cached_property
    def business_manager_repository(self) -> BusinessManagerRepository:
        return BusinessManagerRepository(self.session)

    @cached_property
    def request_repository(self) -> RequestRepository:
        return RequestRepository(self.session)

    @cached_property
    def outbox_repository(self) -> OutboxRepository:
        return OutboxRepository(self.session)

    @cached_property
    def audit_log_partitions(self) -> AuditLogPartitions:
        return AuditLogPartitions(self.session)

    @cached_property
    def idempotency_repository(self) -> IdempotencyRepository:
        return IdempotencyRepository(self.session)

    @cached_property
    def refresh_token_repository(self) -> RefreshTokenRepository:
        return RefreshTokenRepository(self.session)

    @cached_property
    def users(self) -> IUserService:
        return UserService(
            repository=UserRepository(self.session),
            roles=self.roles,
            sessions=_deferred(lambda: self.signin),
            audit=_deferred(lambda: self.audit),
            passwords=self._infrastructure.passwords,
            idempotency=_deferred(lambda: self.idempotency),
            page_tokens=self._infrastructure.page_tokens,
        )

    @cached_property
    def api_keys(self) -> IApiKeyService:
        return ApiKeyService(
            repository=ApiKeyRepository(self.session),
            roles=self.roles,
            audit=_deferred(lambda: self.audit),
            idempotency=_deferred(lambda: self.idempotency),
            page_tokens=self._infrastructure.page_tokens,
        )

    @cached_property
    def signin(self) -> ISigninService:
        return SigninService(
            repository=RefreshTokenRepository(self.session),
            tokens=self._infrastructure.tokens,
            throttle=self._infrastructure.login_throttle,
            users=self.users,
            workspaces=_deferred(lambda: self.workspaces),
        )

    @cached_property
    def audit_logs(self) -> IAuditLogService:
        return AuditLogService(
            repository=AuditLogRepository(self.session), page_tokens=self._infrastructure.page_tokens
        )

    @cached_property
    def request_events(self) -> IRequestEvents:
        return RequestEventRecorder(
            outbox=_deferred(lambda: self.outbox),
            after_commit=self.after_commit,
            publisher=self._infrastructure.request_event_publisher,
        )

    @cached_property
    def requests(self) -> IRequestService:
        return RequestService(
            repository=RequestRepository(self.session, direct=self._direct),
            workspaces=WorkspaceRepository(self.session, direct=self._direct),
            outbox=_deferred(lambda: self.outbox),
            events=self.request_events,
            audit=_deferred(lambda: self.audit),
            idempotency=_deferred(lambda: self.idempotency),
            page_tokens=self._infrastructure.page_tokens,
            ttl=dt.timedelta(days=self._infrastructure.settings.request_ttl_days),
        )

    @cached_property
    def business_managers(self) -> IBusinessManagerService:
        return BusinessManagerService(
            repository=BusinessManagerRepository(self.session),
            holders=[AccountRepository(self.session), PixelRepository(self.session)],
            workspaces=WorkspaceRepository(self.session),
            requests=_deferred(lambda: self.requests),
            audit=_deferred(lambda: self.audit),
            cipher=self._infrastructure.cipher,
            idempotency=_deferred(lambda: self.idempotency),
            page_tokens=self._infrastructure.page_tokens,
        )

    @cached_property
    def accounts(self) -> IAccountService:
        return AccountService(
            repository=AccountRepository(self.session, reader=self._reader),
            business_managers=BusinessManagerRepository(self.session, direct=self._direct),
            pixel_shares=_deferred(lambda: self.pixels),
            members=WorkspaceMemberRepository(self.session),
            users=UserRepository(self.session),
            workspaces=WorkspaceRepository(self.session),
            requests=_deferred(lambda: self.requests),
            audit=_deferred(lambda: self.audit),
            outbox=_deferred(lambda: self.outbox),
            page_tokens=self._infrastructure.page_tokens,
        )

    @cached_property
    def pixels(self) -> IPixelService:
        return PixelService(
            repository=PixelRepository(self.session),
            accounts=AccountRepository(self.session),
            business_managers=BusinessManagerRepository(self.session),
            requests=_deferred(lambda: self.requests),
            audit=_deferred(lambda: self.audit),
            outbox=_deferred(lambda: self.outbox),
            page_tokens=self._infrastructure.page_tokens,
        )

    @cached_property
    def exports(self) -> IExportService:
        return ExportService(
            repository=ExportRepository(self.session),
            accounts=AccountRepository(self.session),
            storage=self._infrastructure.export_storage,
            audit=_deferred(lambda: self.audit),
            page_tokens=self._infrastructure.page_tokens,
            url_ttl=dt.timedelta(seconds=self._infrastructure.settings.export_url_ttl_seconds),
            retention_days=self._infrastructure.settings.export_retention_days,
        )
