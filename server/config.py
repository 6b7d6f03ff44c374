"""Settings, read from environment variables and `.env` (see `.env.example` for every variable)."""

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Signs page tokens in development. Production refuses to start with it.
DEVELOPMENT_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105


# What Envoy adds to a request's headers (x-forwarded-*, x-request-id, x-envoy-*) plus gRPC's 32-byte
# overhead per entry for Envoy's at most 100 headers.
EDGE_HEADER_ALLOWANCE_BYTES = 8192


# A browser origin as CORS_ALLOWED_ORIGINS takes it: scheme, host, and a port or `*` for any port.
_ORIGIN = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:([0-9]{1,5}|\*))?$")
# CORS_ALLOWED_ORIGINS when unset outside production: pages served from this machine, on any port
# (`make run`'s own pages, local front-end dev servers).
DEVELOPMENT_ORIGINS = "http://localhost:*,http://127.0.0.1:*,http://[::1]:*"


# The Graph API version adplane calls (META_GRAPH_API_VERSION), in one place. Meta retires a Marketing
# API version about 90 days after the next one ships, so this follows the `facebook-business` SDK's
# current release (26.0.3 targets v26.0, facebook_business/apiconfig.py). The dev stack's Graph API
# simulator serves devstack/meta_simulator/graph_api.py:SERVED_VERSIONS; a test keeps them in step.
GRAPH_API_VERSION = "v26.0"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class DatabasePooler(StrEnum):
    """What DATABASE_URL (and DATABASE_READ_URL) point at: PostgreSQL itself, or PgBouncer in
    transaction pooling mode (no prepared statement outlives its statement; see docs/scaling.md)."""

    NONE = "none"
    PGBOUNCER = "pgbouncer"


class EventLoop(StrEnum):
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


class FileVariables(PydanticBaseSettingsSource):
    """`NAME_FILE=/path` gives setting NAME the content of that file (one trailing newline dropped).

    How orchestrators hand out secrets without putting them in the environment every process and
    `docker inspect` can read: compose's `secrets:` and Kubernetes Secrets mounted as files. Any
    setting may come from a file; setting both NAME and NAME_FILE is an error, not a guess.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            variable = f"{name.upper()}_FILE"
            path = os.environ.get(variable)
            if not path:
                continue
            if os.environ.get(name.upper()):
                raise ValueError(f"{name.upper()} and {variable} are both set: set one of them")
            try:
                content = Path(path).read_text()
            except OSError as error:
                raise ValueError(f"{variable}: cannot read {path} ({error.strerror})") from None
            values[name] = content.removesuffix("\n").removesuffix("\r")
        return values


class Settings(BaseSettings):
    # Empty variables count as unset, so .env.example can be copied as it is.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True, env_ignore_empty=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment, then NAME_FILE variables (`FileVariables`), then `.env`."""
        return init_settings, env_settings, FileVariables(settings_cls), dotenv_settings, file_secret_settings

    environment: Environment = Environment.DEVELOPMENT
    # Signs opaque tokens (page tokens). At least 32 characters in production.
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET_KEY)

    # Comma-separated Fernet keys encrypting Meta tokens at rest; the first encrypts, all decrypt.
    # Empty: derived from SECRET_KEY (development only; production requires them).
    token_encryption_keys: SecretStr = SecretStr("")
    # Requests not reviewed within this many days expire.
    request_ttl_days: int = Field(default=14, ge=1)

    # Empty: `adplane dev` (make run) starts an embedded PostgreSQL under DATA_DIR.
    database_url: str = ""
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    # How long a call waits for a pooled connection before it answers UNAVAILABLE; SQLAlchemy's
    # default (30 s) outlasts every client's deadline while PostgreSQL is unreachable.
    database_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    # asyncpg connections per process for the hot reads (Gets and Lists) and the hot writes'
    # transactions (RequestAccount, ApproveRequest), beside the pool above.
    database_read_pool_size: int = Field(default=10, ge=1)
    # `pgbouncer`: DATABASE_URL (and DATABASE_READ_URL) go through PgBouncer in transaction mode.
    database_pooler: DatabasePooler = DatabasePooler.NONE
    # PostgreSQL itself, for what needs a session of its own: LISTEN (the standing cache) and
    # migrations. Empty: DATABASE_URL (right when that is not a pooler).
    database_direct_url: str = ""
    # A streaming replica for the hot reads and lists (callers still read their own writes); empty:
    # everything on DATABASE_URL.
    database_read_url: str = ""
    # The replica is skipped (reads go to DATABASE_URL) while it lags more than this many seconds
    # behind the primary, or does not answer.
    database_read_max_lag_seconds: float = Field(default=5.0, gt=0)
    # How often each process measures the replica's lag.
    database_read_check_interval_seconds: float = Field(default=1.0, gt=0)
    # Empty: `adplane dev` starts an embedded Redis under DATA_DIR. With REDIS_SENTINELS set, only its
    # database number and credentials count (the sentinels name the primary's address).
    redis_url: str = ""
    # Comma-separated host:port of Redis Sentinels: every Redis client then connects to the primary
    # they name for REDIS_SENTINEL_SERVICE and follows a failover (server.redis_client).
    redis_sentinels: str = ""
    redis_sentinel_service: str = "adplane"
    # The sentinels' own password (`requirepass` of sentinel.conf), when they have one.
    redis_sentinel_password: SecretStr = SecretStr("")
    # Where the embedded services keep their data between restarts.
    data_dir: Path = PROJECT_ROOT / ".data"

    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    # Server processes sharing the gRPC port through SO_REUSEPORT; 0 means one per core. With more
    # than one, process i also listens on GRPC_PORT + 1 + i of its own, for Envoy to balance over.
    grpc_workers: int = Field(default=1, ge=0)
    # Seconds in-flight RPCs get to finish after SIGTERM/SIGINT before they are cancelled.
    grpc_shutdown_grace: float = Field(default=15.0, ge=0)
    # After SIGTERM the server answers NOT_SERVING but keeps serving this long, so Envoy's health
    # checks (every 2 s) see it and send new calls elsewhere before the server stops taking them.
    grpc_drain_seconds: float = Field(default=3.0, ge=0)
    # Readiness: how often PostgreSQL (and Redis) are probed, and how long a probe may take.
    health_check_interval_seconds: float = Field(default=2.0, gt=0)
    health_check_timeout_seconds: float = Field(default=1.0, gt=0)
    # The largest request body (a gRPC message, a REST JSON body) and response message. Envoy answers a
    # larger REST body with 413 and a larger gRPC message with RESOURCE_EXHAUSTED, as the server does.
    grpc_max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # The largest request header block, in KiB: Envoy answers 431 above it; the server accepts this
    # much plus room for what Envoy adds (EDGE_HEADER_ALLOWANCE_BYTES), so through Envoy the limit is
    # always Envoy's, and a direct gRPC caller meets about the same one.
    max_request_headers_kb: int = Field(default=16, ge=1, le=8192)
    grpc_keepalive_time_ms: int = Field(default=60_000, ge=1000)
    grpc_keepalive_timeout_ms: int = Field(default=20_000, ge=1000)
    # Smallest interval between client pings the server tolerates.
    grpc_min_ping_interval_ms: int = Field(default=10_000, ge=0)
    grpc_max_concurrent_rpcs: int | None = Field(default=None, ge=1)
    # TLS of the gRPC server itself (for callers that reach it directly, and Envoy when
    # ENVOY_UPSTREAM_CA_FILE is set): PEM certificate chain and private key; unset: plaintext. The
    # files are read again when they change (rotation without a restart, see server/tls.py).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # mTLS: callers must present a certificate signed by a CA of this PEM bundle (Envoy presents
    # ENVOY_UPSTREAM_CERT_FILE). Needs TLS_CERT_FILE.
    tls_client_ca_file: Path | None = None
    # A plaintext port answering grpc.health.v1 only (the same answers as GRPC_PORT's), for probes
    # that cannot speak TLS, such as the kubelet's native gRPC probes; shared by the server processes
    # like GRPC_PORT. Unset: none.
    grpc_health_port: int | None = Field(default=None, ge=1, le=65535)

    # Watch streams (WatchRequests): changes reach every server process through a Redis stream.
    # A resume token older than this many seconds is refused (the client re-snapshots).
    watch_retention_seconds: int = Field(default=3600, ge=10)
    # Changes one stream may have waiting to be sent; a client that falls further behind is cut
    # off with RESOURCE_EXHAUSTED and resumes.
    watch_buffer_size: int = Field(default=256, ge=1)
    # A heartbeat is sent after this long without a message.
    watch_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Redis out of reach for longer than this ends open watches with UNAVAILABLE (and a resume
    # token); a shorter outage passes unnoticed by their clients, without a change lost.
    watch_outage_seconds: float = Field(default=10.0, gt=0)
    # How often an open stream's caller is checked again (deactivated, signed out, role lost,
    # token expired -> the stream ends with PERMISSION_DENIED or UNAUTHENTICATED).
    stream_reauthorize_seconds: float = Field(default=5.0, gt=0)

    # Envoy: REST/JSON and gRPC-Web on this port, proxied to the gRPC server.
    http_port: int = Field(default=8080, ge=0, le=65535)
    # Host(s) and port Envoy forwards to; defaults to 127.0.0.1 and GRPC_PORT. Several hosts,
    # comma-separated (one per node, e.g. `10.0.1.5,10.0.2.5`), each get every upstream port.
    grpc_upstream_host: str = "127.0.0.1"
    grpc_upstream_port: int | None = Field(default=None, ge=1, le=65535)
    # Envoy's admin interface listens on 127.0.0.1 only; its Prometheus stats are also served,
    # alone, on ENVOY_METRICS_PORT (all interfaces) at /stats/prometheus.
    envoy_admin_port: int = Field(default=9901, ge=1, le=65535)
    envoy_metrics_port: int = Field(default=9902, ge=1, le=65535)
    # TLS at the edge: Envoy's listener serves HTTPS (HTTP/1.1 and HTTP/2 by ALPN: REST, gRPC-Web
    # and gRPC) with this PEM certificate chain and key; unset: plaintext. Reloaded when a file is
    # replaced (renamed into place, as Kubernetes and certificate tools do), without a restart.
    envoy_tls_cert_file: Path | None = None
    envoy_tls_key_file: Path | None = None
    # Envoy to the server over TLS, the server's certificate checked against this PEM CA bundle;
    # unset: plaintext to the server.
    envoy_upstream_ca_file: Path | None = None
    # The client certificate (and key) Envoy presents to the server, for a server that requires
    # one (TLS_CLIENT_CA_FILE). Needs ENVOY_UPSTREAM_CA_FILE.
    envoy_upstream_cert_file: Path | None = None
    envoy_upstream_key_file: Path | None = None
    # The name the server's certificate must carry (DNS or IP subject alternative name), also sent as
    # SNI when it is a host name. Empty: GRPC_UPSTREAM_HOST.
    envoy_upstream_server_name: str = ""

    # Prometheus `/metrics` of each process kind, on a port of its own; unset: not served.
    # With GRPC_WORKERS > 1 the server's parent process serves the sum over its processes.
    server_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    scheduler_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # The address those listeners (and Envoy's stats listener) bind to. Unset: 127.0.0.1 in
    # development and test, every interface (0.0.0.0) in production, where a scraper on the
    # network (compose's) reaches them.
    metrics_host: str = ""

    # Browser origins whose pages may call the API (CORS), comma-separated, each
    # `scheme://host[:port]` with `*` for any port (`https://app.example.com,http://localhost:*`).
    # Unset: this machine's origins (DEVELOPMENT_ORIGINS) in development and test, none in production.
    cors_allowed_origins: str = ""

    # Meta Graph API. `make run` points META_GRAPH_URL at the local Graph API simulator.
    meta_graph_url: str = "https://graph.facebook.com"
    meta_graph_api_version: str = GRAPH_API_VERSION
    # Development only: the control API of the Graph API simulator (`make run` sets it), so
    # `adplane seed-demo` can create the demo businesses and accounts on the Meta side too.
    meta_simulator_url: str = ""
    # Parallel Graph calls per worker process.
    meta_max_concurrency: int = Field(default=10, ge=1)

    # Background work (taskiq on Redis streams).
    # A message a worker took but did not acknowledge (it died) goes to another worker after this
    # long; it must exceed the longest task.
    task_redelivery_seconds: float = Field(default=900, gt=0)
    # Attempts within one run of a task step that failed for a transient reason (Meta 5xx, rate limits).
    task_max_attempts: int = Field(default=5, ge=1)
    # Longest back-off within one run; a longer wait (Meta asking for more) ends the run, and an
    # approved request then waits (the requeue job runs it again when Meta's regain time is over).
    task_max_backoff_seconds: float = Field(default=120, gt=0)
    # How long transient failures keep an approved request waiting before it fails (retryable).
    task_retry_deadline_seconds: float = Field(default=6 * 3600, gt=0)
    # Tasks running at once in one worker process.
    worker_concurrency: int = Field(default=50, ge=1)
    # The outbox relay: how often it looks for new rows, and how many it publishes at once.
    outbox_poll_seconds: float = Field(default=0.5, gt=0)
    outbox_batch_size: int = Field(default=100, ge=1)
    # Schedules (cron, UTC) of the periodic jobs.
    sync_accounts_cron: str = "*/15 * * * *"
    sync_pixels_cron: str = "5 * * * *"
    sync_business_managers_cron: str = "10 * * * *"
    expire_requests_cron: str = "0 3 * * *"
    # Approved requests that are neither completed nor failed nor in progress (no worker holds
    # them) this long after their approval are queued again: a worker lost the task, or a Redis
    # failover lost its message. Shorter than the time a task waits in the queue under load only
    # queues some twice (harmless: carrying out is idempotent).
    requeue_stalled_cron: str = "*/10 * * * *"
    requeue_stalled_after_seconds: int = Field(default=1800, ge=1)
    # The scheduler's lease in Redis: any number of schedulers run, the holder sends the runs, and
    # another takes over within this long (plus a third of it) after the holder dies.
    scheduler_lease_seconds: float = Field(default=10, ge=1, le=300)
    spend_cap_alerts_cron: str = "*/15 * * * *"
    spend_export_cron: str = "0 4 * * *"

    # Data retention (README "Data retention"): what is deleted, when, and how much per statement.
    # The retention jobs (published outbox rows, idempotency keys, refresh tokens, expired exports,
    # the task stream's acknowledged entries) run on this schedule.
    retention_cron: str = "17 * * * *"
    # Rows deleted per statement (and per transaction) by the retention jobs: short locks, short
    # transactions, and a crash keeps what was done.
    retention_batch_size: int = Field(default=1000, ge=1, le=100_000)
    # Outbox rows are kept this long after they were published (for inspecting what was sent).
    outbox_retention_hours: float = Field(default=24, gt=0)
    # A retry with the same request_id is recognised for this long; the key is deleted afterwards
    # (a retry after that does the work again).
    idempotency_key_retention_hours: float = Field(default=72, gt=0)
    # Refresh tokens are deleted this long after they expired or were revoked; a revoked sign-in
    # stays revoked in the meantime (never less than ACCESS_TOKEN_TTL_SECONDS, so an access token
    # of a revoked sign-in cannot outlive its record).
    refresh_token_retention_grace_hours: float = Field(default=168, gt=0)
    # How long task results stay in Redis (for operators; nothing reads them back).
    task_result_ttl_seconds: int = Field(default=3600, ge=60)
    # Whole months of the audit log kept by `adplane audit-log rotate` and its scheduled run
    # (AUDIT_LOG_ROTATE_CRON): older monthly partitions are dropped. 0 keeps every month.
    audit_log_retention_months: int = Field(default=0, ge=0)
    # Monthly partitions of the audit log created ahead of the current month.
    audit_log_partitions_ahead: int = Field(default=3, ge=1, le=24)
    audit_log_rotate_cron: str = "40 2 * * *"

    # S3 for exports; an empty endpoint means AWS. `make run` starts moto on loopback.
    s3_endpoint_url: str = ""
    # Where download links point, when clients reach the store at another address than the
    # platform does (compose: the platform at http://objectstore:9000, browsers at localhost:9000).
    # Empty: S3_ENDPOINT_URL.
    s3_public_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_bucket: str = "adplane-exports"
    aws_access_key_id: str = ""
    aws_secret_access_key: SecretStr = SecretStr("")
    # Lifetime of presigned download URLs.
    export_url_ttl_seconds: int = Field(default=300, ge=10, le=3600)
    # Spend exports (the files and their rows) are deleted this many days after they were made, by
    # the bucket's lifecycle rule where the store has one and by the retention job in any case;
    # asking for one after that answers NOT_FOUND with reason EXPORT_EXPIRED.
    export_retention_days: int = Field(default=90, ge=1)

    # Peers whose x-forwarded-for is believed (Envoy): comma-separated CIDRs. Everyone else is
    # known by the connection's address (login throttling counts failures per address).
    trusted_proxy_cidrs: str = "127.0.0.1/32,::1/128"

    # Access tokens are JWTs checked without a database read for their signature; keep them short.
    access_token_ttl_seconds: int = Field(default=900, ge=30)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    # Sign-in throttling (server/auth/throttle.py), which locks no one out. Failures count within
    # this many seconds of the last one.
    login_failure_window_seconds: int = Field(default=900, ge=1)
    # After this many failures from one address at one account, that address's attempts at that
    # account are refused (RESOURCE_EXHAUSTED, RetryInfo) until a delay has passed since its last
    # failure: LOGIN_FIRST_DELAY_SECONDS, doubled by each further failure, at most LOGIN_MAX_DELAY_SECONDS.
    login_delay_after: int = Field(default=5, ge=1)
    login_max_delay_seconds: float = Field(default=300.0, gt=0)
    # After this many failures at one account (from anywhere), or from one address (at any account),
    # each attempt there waits before its password is checked, the same way up to
    # LOGIN_MAX_WAIT_SECONDS; it is never refused for them.
    login_wait_after: int = Field(default=10, ge=1)
    login_max_wait_seconds: float = Field(default=10.0, ge=0)
    login_first_delay_seconds: float = Field(default=1.0, gt=0)

    # Per-caller rate limits (server/interceptors/rate_limit.py): a token bucket per API key or user
    # and per class of method, in Redis, so that it holds across every server process and node. Reads
    # are the RPCs routed as GET, streams count when they open, writes are the rest. Tokens per second
    # (0: no limit for the class) and the most a caller may spend at once. Over the limit: 429 /
    # RESOURCE_EXHAUSTED (RATE_LIMITED) with RetryInfo and Retry-After.
    rate_limit_reads_per_second: float = Field(default=100.0, ge=0)
    rate_limit_reads_burst: int = Field(default=200, ge=1)
    rate_limit_writes_per_second: float = Field(default=20.0, ge=0)
    rate_limit_writes_burst: int = Field(default=40, ge=1)
    rate_limit_streams_per_second: float = Field(default=1.0, ge=0)
    rate_limit_streams_burst: int = Field(default=20, ge=1)

    # The event loop of the server, worker and scheduler processes. uvloop costs the server about a
    # tenth less CPU per request than asyncio's own loop (bench/README.md); `asyncio` is the way back
    # should a library ever misbehave on it.
    event_loop: EventLoop = EventLoop.UVLOOP

    log_level: str = "INFO"
    # Empty: JSON in production, readable console lines otherwise.
    log_format: LogFormat | None = None
    # The same error (logger, event, exception) is written at most once per this many seconds,
    # then one line with how many more times it happened.
    log_repeat_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _defaults_by_environment(cls, data: Any) -> Any:
        """METRICS_HOST and CORS_ALLOWED_ORIGINS default to what the environment calls for."""
        if not isinstance(data, dict):
            return data
        production = str(data.get("environment") or "").lower() == Environment.PRODUCTION
        if not data.get("metrics_host"):
            data = {**data, "metrics_host": "0.0.0.0" if production else "127.0.0.1"}
        if not data.get("cors_allowed_origins"):
            data = {**data, "cors_allowed_origins": "" if production else DEVELOPMENT_ORIGINS}
        return data

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",") if o.strip()):
            # `null` (sandboxed frames, file: pages) and `*` would let any page in.
            if not _ORIGIN.match(origin):
                raise ValueError(f"not an origin (scheme://host[:port], port * for any): {origin!r}")
        return value

    @model_validator(mode="after")
    def _tls_files_in_pairs(self) -> "Settings":
        """A certificate goes with its key, and what builds on TLS needs the TLS it builds on."""
        pairs = [
            ("TLS_CERT_FILE", self.tls_cert_file, "TLS_KEY_FILE", self.tls_key_file),
            ("ENVOY_TLS_CERT_FILE", self.envoy_tls_cert_file, "ENVOY_TLS_KEY_FILE", self.envoy_tls_key_file),
            (
                "ENVOY_UPSTREAM_CERT_FILE",
                self.envoy_upstream_cert_file,
                "ENVOY_UPSTREAM_KEY_FILE",
                self.envoy_upstream_key_file,
            ),
        ]
        for cert_name, cert, key_name, key in pairs:
            if (cert is None) != (key is None):
                raise ValueError(f"{cert_name} and {key_name} go together: set both or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("TLS_CLIENT_CA_FILE (client certificates) needs TLS_CERT_FILE and TLS_KEY_FILE")
        if self.envoy_upstream_cert_file is not None and self.envoy_upstream_ca_file is None:
            raise ValueError("ENVOY_UPSTREAM_CERT_FILE needs ENVOY_UPSTREAM_CA_FILE (TLS to the server)")
        return self

    @property
    def cors_origins(self) -> list[str]:
        return [origin.strip().rstrip("/") for origin in self.cors_allowed_origins.split(",") if origin.strip()]

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels(cls, value: str) -> str:
        for address in filter(None, (part.strip() for part in value.split(","))):
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected comma-separated host:port, got {address!r}")
        return value

    @property
    def redis_sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs."""
        pairs = (part.strip().rpartition(":") for part in self.redis_sentinels.split(",") if part.strip())
        return [(host.strip("[]"), int(port)) for host, _, port in pairs]

    @model_validator(mode="after")
    def _direct_url_behind_a_pooler(self) -> "Settings":
        # Through PgBouncer in transaction mode a LISTEN would hear nothing once its server
        # connection went to another client, and migrations need a session of their own.
        if self.database_pooler is DatabasePooler.PGBOUNCER and self.database_url and not self.database_direct_url:
            raise ValueError("DATABASE_POOLER=pgbouncer needs DATABASE_DIRECT_URL (PostgreSQL itself, not PgBouncer)")
        return self

    @field_validator("database_url", "database_direct_url", "database_read_url")
    @classmethod
    def _use_asyncpg(cls, url: str) -> str:
        # Accept the plain URLs other tools use (postgres://, postgresql://) and pick the async driver.
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                url = "postgresql+asyncpg://" + url.removeprefix(prefix)
        # libpq's sslmode is asyncpg's ssl (same values: disable, require, verify-full, ...).
        return url.replace("?sslmode=", "?ssl=").replace("&sslmode=", "&ssl=")

    def check_production_ready(self) -> None:
        """Refuse development defaults in production. Called by the commands that need the secrets
        (serve, migrate, ...), so `adplane envoy` runs without them."""
        if self.environment is not Environment.PRODUCTION:
            return
        key = self.secret_key.get_secret_value()
        if key == DEVELOPMENT_SECRET_KEY or len(key) < 32:
            raise ValueError("SECRET_KEY must be set to a random value of 32+ characters in production")
        if not self.database_url:
            raise ValueError("DATABASE_URL is required in production")
        if not self.redis_configured:
            raise ValueError("REDIS_URL (or REDIS_SENTINELS) is required in production (login throttling)")
        if not self.token_encryption_keys.get_secret_value():
            raise ValueError("TOKEN_ENCRYPTION_KEYS is required in production (Fernet keys, comma-separated)")

    @property
    def redis_configured(self) -> bool:
        return bool(self.redis_url or self.redis_sentinels)

    @property
    def direct_database_url(self) -> str:
        """Where sessions of their own go (LISTEN, migrations): DATABASE_DIRECT_URL or DATABASE_URL."""
        return self.database_direct_url or self.database_url

    @property
    def effective_log_format(self) -> LogFormat:
        if self.log_format is not None:
            return self.log_format
        return LogFormat.JSON if self.environment is Environment.PRODUCTION else LogFormat.CONSOLE

    @property
    def server_max_metadata_bytes(self) -> int:
        """The gRPC server's metadata limit (soft and hard alike, so nothing is refused by chance)."""
        return self.max_request_headers_kb * 1024 + EDGE_HEADER_ALLOWANCE_BYTES

    @property
    def upstream_server_name(self) -> str:
        """The name Envoy expects in the server's certificate."""
        return self.envoy_upstream_server_name or self.grpc_upstream_host

    @property
    def upstream_port(self) -> int:
        return self.grpc_upstream_port or self.grpc_port

    @property
    def effective_grpc_workers(self) -> int:
        """GRPC_WORKERS, 0 resolved to one per core (process_cpu_count honours CPU affinity)."""
        return self.grpc_workers or os.process_cpu_count() or 1

    def worker_port(self, index: int) -> int:
        """The port server process `index` listens on alone, next to the shared GRPC_PORT."""
        return self.grpc_port + 1 + index

    @property
    def upstream_hosts(self) -> list[str]:
        """GRPC_UPSTREAM_HOST as a list: the nodes Envoy balances over."""
        return [host.strip() for host in self.grpc_upstream_host.split(",") if host.strip()]

    @property
    def upstream_ports(self) -> list[int]:
        """The ports Envoy balances over: one per server process when several share GRPC_PORT
        (a shared port would leave Envoy's few long-lived connections on whichever process the
        kernel picked), else the one port; an explicit GRPC_UPSTREAM_PORT wins."""
        workers = self.effective_grpc_workers
        if self.grpc_upstream_port is None and workers > 1:
            return [self.worker_port(index) for index in range(workers)]
        return [self.upstream_port]


# What a running `make run` stack writes into DATA_DIR (its database, Redis and fakes), so that
# `adplane seed-demo` and every other command find it without exported variables.
DEV_ENV_FILE = "dev.env"
DEV_ENV_NAMES = (
    "DATABASE_URL",
    "REDIS_URL",
    "META_GRAPH_URL",
    "META_SIMULATOR_URL",
    "S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


def load_settings(**overrides: object) -> Settings:
    """The settings of an `adplane` command: the environment first, then `.env`, then, in development
    only, the running dev stack's `DATA_DIR/dev.env`. Production never reads that file."""
    settings = Settings(**overrides)  # type: ignore[arg-type]
    dev_env = settings.data_dir / DEV_ENV_FILE
    if settings.environment is not Environment.DEVELOPMENT or not dev_env.is_file():
        return settings
    # Later files win: .env (the developer's own choices) over what the dev stack wrote.
    return Settings(_env_file=(dev_env, ".env"), **overrides)  # type: ignore[arg-type]


def write_dev_env(path: Path, env: dict[str, str]) -> None:
    """Write the dev stack's connection settings (those of DEV_ENV_NAMES that `env` has), owner-only."""
    lines = [f"{name}={env[name]}\n" for name in DEV_ENV_NAMES if env.get(name)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("# Written by `adplane dev` while it runs; removed when it stops.\n" + "".join(lines))
