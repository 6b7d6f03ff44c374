"""The `adplane` command."""

from enum import StrEnum
from typing import Annotated, Any

import typer

from server.config import Settings, load_settings

app = typer.Typer(
    help="adplane: the control plane for Meta ad assets (gRPC + REST through Envoy).",
    no_args_is_help=True,
    add_completion=False,
)


def _settings(**overrides: Any) -> Settings:
    """Settings for a command that uses the database or the secrets: production refuses dev defaults."""
    try:
        settings = load_settings(**overrides)
        settings.check_production_ready()
    except ValueError as error:
        typer.echo(f"adplane: {error}", err=True)
        raise typer.Exit(2) from None
    return settings


@app.command()
def serve(
    workers: Annotated[
        int | None, typer.Option(help="Server processes sharing the port; 0 = one per core. Default: GRPC_WORKERS.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="gRPC port. Default: GRPC_PORT.")] = None,
) -> None:
    """Run the gRPC API server until SIGTERM/SIGINT, then drain in-flight RPCs."""
    from server import app as server_app
    from server.tls import server_credentials

    overrides: dict[str, Any] = {k: v for k, v in {"grpc_workers": workers, "grpc_port": port}.items() if v is not None}
    settings = _settings(**overrides)
    try:
        server_credentials(settings)  # the TLS files, checked before any process starts
    except ValueError as error:
        typer.echo(f"adplane: {error}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(server_app.run(settings))


@app.command()
def migrate(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Upgrade the database schema (to the latest revision by default)."""
    from server import migrations

    migrations.upgrade(_settings(), revision)


@app.command("wait-for-schema")
def wait_for_schema(
    timeout: Annotated[float, typer.Option(help="Give up (exit 1) after this many seconds.")] = 600,
    interval: Annotated[float, typer.Option(help="Seconds between two looks at the database.")] = 2,
) -> None:
    """Wait until the database's schema is at this code's head (or newer), then exit 0: the init
    container of the server and worker pods, which start only once the release's migration ran."""
    import time

    from server import migrations

    settings = _settings()
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        try:
            if migrations.schema_is_ready(settings):
                typer.echo("schema: ready")
                return
            state = "schema: behind this release's migrations; waiting for `adplane migrate`"
        except Exception as error:  # the database not up yet: keep waiting, say why once
            state = f"schema: database not reachable ({error.__class__.__name__}); waiting"
        if state != said:
            typer.echo(state, err=True)
            said = state
        if time.monotonic() >= deadline:
            typer.echo(f"adplane: the schema was not ready within {timeout:g} s", err=True)
            raise typer.Exit(1)
        time.sleep(interval)


@app.command()
def downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")]) -> None:
    """Downgrade the database schema."""
    from server import migrations

    migrations.downgrade(_settings(), revision)


@app.command()
def makemigrations(
    message: Annotated[str, typer.Argument(help="What the migration does.")],
    empty: Annotated[bool, typer.Option("--empty", help="Write an empty revision instead of autogenerating.")] = False,
) -> None:
    """Write a new migration from the difference between the models and the database."""
    from server import migrations

    migrations.make_migration(load_settings(), message, empty=empty)


@app.command()
def worker() -> None:
    """Run background tasks (taskiq worker on Redis streams) and relay the outbox, until SIGTERM/SIGINT.
    Run as many as needed: they share the work."""
    from server.background import worker as task_worker

    raise typer.Exit(task_worker.run(_settings()))


@app.command()
def scheduler() -> None:
    """Send the periodic tasks on their schedules (syncs, expiry, alerts, exports). Run one or more:
    the one holding the lease in Redis sends each run once; another takes over when it dies."""
    from server.background import scheduler as task_scheduler

    raise typer.Exit(task_scheduler.run(_settings()))


@app.command()
def liveness(kind: Annotated[str, typer.Argument(help="worker or scheduler")]) -> None:
    """Exit 0 while the worker or scheduler on this host is alive (its event loop touched its heartbeat
    file within the last 30 s), 1 otherwise: the health check of their containers."""
    from server.taskqueue.heartbeat import STALE_AFTER_SECONDS, staleness

    if kind not in ("worker", "scheduler"):
        typer.echo(f"adplane: liveness of {kind!r}: expected worker or scheduler", err=True)
        raise typer.Exit(2)
    age = staleness("worker" if kind == "worker" else "scheduler")
    if age is None or age > STALE_AFTER_SECONDS:
        typer.echo(f"{kind}: not alive (" + ("no heartbeat" if age is None else f"last heartbeat {age:.0f}s ago") + ")")
        raise typer.Exit(1)
    typer.echo(f"{kind}: alive (last heartbeat {age:.0f}s ago)")


sync_app = typer.Typer(help="Run a periodic sync now, by hand.", no_args_is_help=True)
app.add_typer(sync_app, name="sync")


@sync_app.command("accounts")
def sync_accounts() -> None:
    """Sync every ad account with Meta now (status, disable reason, spend), with a progress bar."""
    import asyncio

    from rich.progress import Progress

    from server.accounts.sync import sync_accounts as run_sync
    from server.background.resources import WorkerResources

    settings = _settings()

    async def run() -> str:
        resources = WorkerResources.open(settings)
        try:
            with Progress(transient=False) as bar:
                task = bar.add_task("syncing ad accounts", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                summary = await run_sync(
                    resources.infrastructure.unit_of_work,
                    resources.steps(),
                    concurrency=settings.meta_max_concurrency,
                    progress=progress,
                )
            return str(summary)
        finally:
            await resources.close()

    typer.echo(asyncio.run(run()))


@app.command("export-spend")
def export_spend() -> None:
    """Write today's spend export of every workspace to S3 now (the scheduler does it daily)."""
    import asyncio
    import datetime as dt

    from server.composition import Infrastructure
    from server.config import Environment
    from server.exports.tasks import run_daily_spend_export

    settings = _settings()

    async def run() -> str:
        infrastructure = Infrastructure.build(settings)
        try:
            summary = await run_daily_spend_export(
                infrastructure.unit_of_work,
                day=dt.datetime.now(dt.UTC).date(),
                create_bucket=settings.environment is not Environment.PRODUCTION,
            )
        finally:
            await infrastructure.close()
        failed = f", {len(summary.failed)} failed" if summary.failed else ""
        return f"exported {summary.rows} accounts of {summary.workspaces} workspaces{failed}"

    typer.echo(asyncio.run(run()))


audit_log_app = typer.Typer(help="The audit log's monthly partitions.", no_args_is_help=True)
app.add_typer(audit_log_app, name="audit-log")


@audit_log_app.command("rotate")
def rotate_audit_log(
    keep_months: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Drop the monthly partitions older than this many whole months before the current one "
            "(0 drops nothing). Default: AUDIT_LOG_RETENTION_MONTHS.",
        ),
    ] = None,
    ahead: Annotated[
        int | None,
        typer.Option(min=1, help="Months to create ahead of the current one. Default: AUDIT_LOG_PARTITIONS_AHEAD."),
    ] = None,
) -> None:
    """Create the audit log's next monthly partitions and drop whole months older than those kept (the
    scheduler runs it daily with the settings). Never deletes a single entry from a month it keeps."""
    import asyncio

    from server.audit_logs.partitions import rotate_partitions
    from server.composition import Infrastructure

    settings = _settings()

    async def run() -> str:
        infrastructure = Infrastructure.build(settings)
        try:
            rotation = await rotate_partitions(
                infrastructure.unit_of_work,
                keep_months=settings.audit_log_retention_months if keep_months is None else keep_months,
                ahead=settings.audit_log_partitions_ahead if ahead is None else ahead,
            )
        finally:
            await infrastructure.close()
        moved = f" ({rotation.moved} entries moved in from the default partition)" if rotation.moved else ""
        return (
            f"created: {', '.join(rotation.created) or 'none'}{moved}\ndropped: {', '.join(rotation.dropped) or 'none'}"
        )

    typer.echo(asyncio.run(run()))


@app.command()
def envoy() -> None:
    """Render envoy/envoy.yaml from settings and run Envoy (REST/JSON and gRPC-Web on HTTP_PORT)."""
    from server.edge.envoy import exec_envoy

    settings = load_settings()
    exec_envoy(settings, config_dir=settings.data_dir / "envoy")


def _require_devstack(command: str) -> None:
    """`dev` and `seed-demo` run the development stack (`devstack/` at the repository root), which is
    installed by `make bootstrap` in a checkout and absent from the wheel and the Docker image."""
    import importlib.util

    if importlib.util.find_spec("devstack") is None:
        typer.echo(
            f"adplane: `adplane {command}` needs the development stack (the `devstack` package of a source "
            "checkout, installed by `make bootstrap`); it is not part of a production install",
            err=True,
        )
        raise typer.Exit(2)


class Topology(StrEnum):
    SINGLE = "single"
    CLUSTER = "cluster"


@app.command()
def dev(
    tls: Annotated[
        bool,
        typer.Option(
            "--tls",
            help="Serve TLS: HTTPS at Envoy, TLS with client certificates (mTLS) at the server, with "
            "certificates of a local CA made on first use under DATA_DIR/tls.",
        ),
    ] = False,
    topology: Annotated[
        Topology,
        typer.Option(
            help="single: one process of each kind. cluster (make cluster): two nodes on 127.0.0.2 and "
            "127.0.0.3, each with server processes, a worker and a scheduler, Envoy over both, PostgreSQL "
            "behind PgBouncer, Redis behind three sentinels (docs/scaling.md).",
        ),
    ] = Topology.SINGLE,
) -> None:
    """Run the whole stack on this machine (what `make run` does): embedded PostgreSQL and Redis
    when DATABASE_URL / REDIS_URL are unset, the Graph API simulator and moto's S3 when
    META_GRAPH_URL / S3_ENDPOINT_URL are unset, migrations, the server, Envoy, a worker and the
    scheduler. Plaintext unless --tls."""
    _require_devstack("dev")
    from devstack.supervisor import run_dev_stack

    raise typer.Exit(run_dev_stack(Settings(), tls=tls, cluster=topology is Topology.CLUSTER))


@app.command()
def createsuperuser(
    email: Annotated[str, typer.Option(prompt=True, help="Sign-in email.")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="At least 12 characters.")
    ],
    full_name: Annotated[str, typer.Option(help="Display name.")] = "",
    keep_existing: Annotated[
        bool, typer.Option("--keep-existing", help="Leave a user who already has this email unchanged.")
    ] = False,
) -> None:
    """Create a superuser (or make the user with this email one, with this password).

    Prompts for the email and password when the options are missing."""
    import asyncio

    from server.api_helpers import validated
    from server.composition import Infrastructure
    from server.exceptions import InvalidRequestException
    from server.users.schemas import UserCreateRequestSchema

    settings = _settings()
    try:
        data = validated(UserCreateRequestSchema, {"email": email, "password": password, "full_name": full_name})
    except InvalidRequestException as error:
        typer.echo(f"adplane: {error.message}", err=True)
        raise typer.Exit(2) from None

    async def run() -> str:
        infrastructure = Infrastructure.build(settings)
        try:
            async with infrastructure.unit_of_work() as uow:
                user = await uow.users.ensure_superuser(data, keep_existing=keep_existing)
            return user.email
        finally:
            await infrastructure.close()

    typer.echo(f"superuser {asyncio.run(run())} is ready")


@app.command("seed-demo")
def seed_demo() -> None:
    """Load a demo dataset (workspaces, members of every role, business managers, accounts in every
    Meta status, pixels, requests waiting for approval) and print the demo logins."""
    import asyncio

    _require_devstack("seed-demo")
    from devstack.demo import DEMO_PASSWORD, AlreadySeededError, DemoLogin
    from devstack.demo import seed_demo as load
    from server.composition import Infrastructure

    settings = _settings()

    async def run() -> list[DemoLogin]:
        infrastructure = Infrastructure.build(settings)
        try:
            return await load(infrastructure)
        finally:
            await infrastructure.close()

    try:
        logins = asyncio.run(run())
    except AlreadySeededError as error:
        typer.echo(f"adplane: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"demo data loaded; every demo user signs in with the password {DEMO_PASSWORD!r}:")
    for login in logins:
        typer.echo(f"  {login.email:<34} {login.what}")
