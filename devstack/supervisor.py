"""`adplane dev` (`make run`): the whole stack on one machine, with nothing installed beforehand.

Starts embedded PostgreSQL and Redis for the URLs that are not configured, migrates, then runs the
processes in CHILDREN until Ctrl-C/SIGTERM: one that dies is started again after a back-off (one
that cannot stay up stops the stack), PostgreSQL or Redis going away is reported, and the banner
comes once Envoy routes to a serving server.
"""

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from os import environ
from pathlib import Path
from types import FrameType

from devstack.certificates import DevCertificates, dev_certificates
from devstack.children import Child, ChildState, stop_children
from devstack.cluster import Cluster, ClusterPorts, DataTier, cluster_refusal, start_data_tier
from devstack.embedded import free_port, is_port_free, start_postgres, start_redis
from devstack.probes import Probe, postgres_reachable, redis_reachable, routes_to_serving_server
from server.config import DEV_ENV_FILE, Settings, write_dev_env

# The long-running processes of the stack, as `adplane` subcommands. Exactly one scheduler.
CHILDREN: dict[str, list[str]] = {
    "server": ["serve"],
    "envoy": ["envoy"],
    "worker": ["worker"],
    "scheduler": ["scheduler"],
}
# Stand-ins for third parties, started when the settings do not point at the real ones.
DEV_META_SIMULATOR_PORT = 8099
DEV_S3_PORT = 8098
DEV_DATABASE = "adplane"
# The superuser `make run` creates in the embedded database, so a newcomer can sign in at once.
# Never created against a DATABASE_URL of someone else's.
DEV_ADMIN_EMAIL = "admin@example.com"
DEV_ADMIN_PASSWORD = "adplane-dev-admin"  # noqa: S105 - a development login, printed in the banner
# Not 6379, so a Redis installed on the machine keeps its port.
DEV_REDIS_PORT = 6380
# Server processes unless GRPC_WORKERS is set: more than one, so that a developer sees what production
# does when one restarts or dies (Envoy sends its calls to the others while it comes back).
DEV_GRPC_WORKERS = 2
# /metrics of the server, the worker and the scheduler.
DEV_METRICS_PORTS = (9464, 9465, 9466)
# How long children get after the grace period of the gRPC server before they are killed.
EXTRA_STOP_SECONDS = 5.0
POLL_SECONDS = 0.2
# How often PostgreSQL and Redis are checked.
PROBE_SECONDS = 2.0
# Said once when Envoy still does not route to a serving server this long after the start.
SLOW_START_SECONDS = 60.0


def run_dev_stack(settings: Settings, *, tls: bool = False, cluster: bool = False) -> int:
    """Runs the stack until a signal (returns 0) or a child that cannot stay up (returns non-zero).

    `tls`: the server and Envoy serve TLS with certificates of a local CA made on first use under
    DATA_DIR/tls (devstack/certificates.py); the server requires client certificates, Envoy presents one.
    `cluster`: the multi-node topology of devstack/cluster.py instead of one process of each kind.
    """
    if cluster and (problem := cluster_refusal(settings, tls=tls)):
        print(f"adplane dev: {problem}", file=sys.stderr)
        return 2
    received: list[int] = []

    def remember(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    # From here on a signal only sets `received`: startup finishes the step it is in, and the
    # children are stopped in order instead of all at once by the terminal.
    previous = {signum: signal.signal(signum, remember) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ExitStack() as backing_services:
            tier = start_data_tier(settings.data_dir / "cluster", backing_services) if cluster else None
            env = dict(environ) | tier.env if tier else _start_backing_services(settings, backing_services)
            certificates = dev_certificates(settings.data_dir) if tls else None
            if certificates is not None:
                env.update(certificates.env())
            if received:
                return 0
            prepared = _prepare_database(env, create_admin=not settings.database_url)
            if prepared != 0:
                return prepared
            if received:
                return 0
            children = [Child(name, start) for name, start in _third_party_fakes(settings, env).items()]
            for child in children:
                child.launch(time.monotonic())
            for url in (env.get("META_SIMULATOR_URL"), env.get("S3_ENDPOINT_URL")):
                if url:
                    _wait_for_http(url)
            # Other `adplane` commands (seed-demo, createsuperuser, ...) find this stack through it.
            dev_env = settings.data_dir / DEV_ENV_FILE
            write_dev_env(dev_env, env)
            backing_services.callback(dev_env.unlink, missing_ok=True)
            processes, redis_probe, described = _stack_processes(settings, env, tier)
            children += processes
            for child in children:
                if child.process is None:
                    child.launch(time.monotonic())
            return _supervise(
                children,
                received,
                probes=[
                    Probe(f"PostgreSQL ({env['DATABASE_URL']})", postgres_reachable(env["DATABASE_URL"])),
                    redis_probe,
                ],
                serving=partial(
                    routes_to_serving_server,
                    settings.http_port,
                    ca_file=certificates.ca if certificates is not None else None,
                ),
                banner=partial(_print_banner, settings, env, certificates, described),
                stop_timeout=settings.grpc_shutdown_grace + EXTRA_STOP_SECONDS,
            )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stack_processes(settings: Settings, env: dict[str, str], tier: DataTier | None) -> tuple[list[Child], Probe, str]:
    """The adplane processes to run, how to tell that Redis answers, and the banner's lines on the nodes."""
    if tier is None:
        _metrics_ports(settings, env)
        _server_processes(settings, env)
        children = [Child(name, partial(_spawn, arguments, env)) for name, arguments in CHILDREN.items()]
        return children, Probe(f"Redis ({env['REDIS_URL']})", redis_reachable(env["REDIS_URL"])), ""
    nodes = Cluster(env, ClusterPorts.pick(settings.grpc_port), settings.data_dir / "cluster")
    redis = Probe(f"Redis (the primary the sentinels {tier.redis.sentinels} name)", tier.primary_up)
    return list(nodes.children.values()), redis, nodes.describe()


def _prepare_database(env: dict[str, str], *, create_admin: bool) -> int:
    """Migrations, and the development superuser in a database `make run` made; an exit code."""
    migrate = _spawn(["migrate"], env)
    if migrate.wait() != 0:
        print(f"adplane dev: migrate exited with {migrate.returncode}", file=sys.stderr)
        return migrate.returncode
    if create_admin:
        admin = _spawn(
            ["createsuperuser", "--email", DEV_ADMIN_EMAIL, "--password", DEV_ADMIN_PASSWORD, "--keep-existing"], env
        )
        if admin.wait() != 0:
            print(f"adplane dev: createsuperuser exited with {admin.returncode}", file=sys.stderr)
            return admin.returncode
    return 0


def _third_party_fakes(settings: Settings, env: dict[str, str]) -> dict[str, Callable[[], subprocess.Popen[bytes]]]:
    """How to start the Graph API simulator and moto's S3, unless META_GRAPH_URL / S3_ENDPOINT_URL are set.

    Sets the URLs (and moto's dummy credentials) in `env` for the children started after.
    """
    fakes: dict[str, Callable[[], subprocess.Popen[bytes]]] = {}
    python = str(Path(sys.executable))
    # Set in the environment or .env: the real (or another) service is used.
    configured = settings.model_fields_set
    if "meta_graph_url" not in configured:
        port = DEV_META_SIMULATOR_PORT if is_port_free(DEV_META_SIMULATOR_PORT) else free_port()
        fakes["meta-simulator"] = partial(
            _spawn_quiet, [python, "-m", "devstack.meta_simulator", "--port", str(port)], env, stderr=None
        )
        env["META_GRAPH_URL"] = env["META_SIMULATOR_URL"] = f"http://127.0.0.1:{port}"
    if "s3_endpoint_url" not in configured:
        port = DEV_S3_PORT if is_port_free(DEV_S3_PORT) else free_port()
        fakes["s3"] = partial(
            _spawn_quiet,
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            env,
            stderr=subprocess.DEVNULL,
        )
        env["S3_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
        env.setdefault("AWS_ACCESS_KEY_ID", "dev")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "dev")
    return fakes


def _server_processes(settings: Settings, env: dict[str, str]) -> None:
    """GRPC_WORKERS for the server and Envoy alike: DEV_GRPC_WORKERS unless set."""
    if "grpc_workers" not in settings.model_fields_set:
        env["GRPC_WORKERS"] = str(DEV_GRPC_WORKERS)


def _metrics_ports(settings: Settings, env: dict[str, str]) -> None:
    """Metrics endpoints for every process kind, on fixed ports where free (set ones are kept)."""
    configured = {
        "SERVER_METRICS_PORT": settings.server_metrics_port,
        "WORKER_METRICS_PORT": settings.worker_metrics_port,
        "SCHEDULER_METRICS_PORT": settings.scheduler_metrics_port,
    }
    for (variable, port), default in zip(configured.items(), DEV_METRICS_PORTS, strict=True):
        if port is None:
            env[variable] = str(default if is_port_free(default) else free_port())


def _spawn_quiet(command: list[str], env: dict[str, str], *, stderr: int | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, process_group=0
    )


def _wait_for_http(url: str, *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - a loopback URL we started
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up within {timeout:.0f}s")


def _start_backing_services(settings: Settings, stack: ExitStack) -> dict[str, str]:
    """The environment of the children: this one plus DATABASE_URL and REDIS_URL."""
    env = dict(environ)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    else:
        postgres = stack.enter_context(start_postgres(settings.data_dir / "postgres", ephemeral=False))
        env["DATABASE_URL"] = postgres.create_database(DEV_DATABASE)
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    else:
        port = DEV_REDIS_PORT if is_port_free(DEV_REDIS_PORT) else None
        redis = stack.enter_context(start_redis(settings.data_dir / "redis", port=port, ephemeral=False))
        env["REDIS_URL"] = redis.url
    return env


def _spawn(arguments: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    adplane = Path(sys.executable).parent / "adplane"
    # Own process group: Ctrl-C reaches the supervisor only, which forwards it once, in order.
    return subprocess.Popen([str(adplane), *arguments], env=env, stdin=subprocess.DEVNULL, process_group=0)


def _supervise(
    children: list[Child],
    received: list[int],
    *,
    probes: list[Probe],
    serving: Callable[[], bool],
    banner: Callable[[], None],
    stop_timeout: float,
) -> int:
    """Until a signal: children that die are started again (see devstack.children), PostgreSQL and
    Redis going away or coming back is reported, and the banner is printed once Envoy routes to a
    serving server. A child that cannot stay up stops the stack."""
    started = time.monotonic()
    banner_due = True
    slow_start_reported = False
    next_probe = started
    while True:
        if received:
            stop_children(children, received[0], timeout=stop_timeout)
            return 0
        now = time.monotonic()
        for child in children:
            if child.poll(now) is ChildState.GAVE_UP:
                stop_children(children, signal.SIGTERM, timeout=stop_timeout)
                return child.last_exit or 1
        if banner_due and serving():
            banner()
            banner_due = False
        elif banner_due and not slow_start_reported and now - started > SLOW_START_SECONDS:
            print(
                f"adplane dev: Envoy does not route to a serving server after {SLOW_START_SECONDS:.0f}s",
                file=sys.stderr,
            )
            slow_start_reported = True
        if now >= next_probe:
            for probe in probes:
                change = probe.check()
                if change:
                    print(change, file=sys.stderr, flush=True)
            next_probe = now + PROBE_SECONDS
        time.sleep(POLL_SECONDS)


def _print_banner(
    settings: Settings, env: dict[str, str], certificates: DevCertificates | None = None, nodes: str = ""
) -> None:
    grpc_host = "127.0.0.1" if settings.grpc_host in ("0.0.0.0", "::", "") else settings.grpc_host
    if certificates is None:
        rest, curl, tls = f"http://127.0.0.1:{settings.http_port}", "curl", ""
        grpc_line = f"127.0.0.1:{settings.http_port}  (through Envoy)" if nodes else f"{grpc_host}:{settings.grpc_port}"
    else:
        rest, curl = f"https://localhost:{settings.http_port}", f"curl --cacert {certificates.ca}"
        client_cert, client_key = certificates.client
        grpc_line = f"{grpc_host}:{settings.grpc_port}  (TLS, client certificate required: {client_cert}, {client_key})"
        tls = f"\n  TLS CA       {certificates.ca}  (the local CA: trust it in clients; made on first use)"
    print(
        f"""
adplane dev stack (Ctrl-C stops everything){nodes}
  gRPC         {grpc_line}
  REST         {rest}  (gRPC-Web on the same port{", and gRPC" if certificates else ""}){tls}
  Envoy admin  http://127.0.0.1:{settings.envoy_admin_port}
  Metrics      {_metrics_urls(settings, env)}
  PostgreSQL   {env["DATABASE_URL"]}
  Redis        {env.get("REDIS_URL") or f"through the sentinels {env['REDIS_SENTINELS']}"}
  Meta Graph   {env.get("META_GRAPH_URL", settings.meta_graph_url)}
  S3           {env.get("S3_ENDPOINT_URL") or "AWS"}
{_login_help(settings, rest, curl)}
load demo data (workspaces, members of every role, accounts, pixels, requests waiting), and
run the daily spend export now (every `adplane` command finds this stack through
{settings.data_dir / DEV_ENV_FILE} while it runs; variables you export win):
  .venv/bin/adplane seed-demo
  .venv/bin/adplane export-spend""",
        flush=True,
    )


def _metrics_urls(settings: Settings, env: dict[str, str]) -> str:
    ports = {kind: env.get(f"{kind.upper()}_METRICS_PORT") for kind in ("server", "worker", "scheduler")} | {
        "envoy": str(settings.envoy_metrics_port)
    }
    paths = {"envoy": "/stats/prometheus"}
    return "\n               ".join(
        f"{kind:<9} http://127.0.0.1:{port}{paths.get(kind, '/metrics')}" for kind, port in ports.items() if port
    )


def _login_help(settings: Settings, rest: str, curl: str = "curl") -> str:
    if settings.database_url:
        first = "create a user with `adplane createsuperuser`, sign in with POST /api/auth/login, then:"
        token = "  TOKEN=<tokens.access_token of the login response>"  # noqa: S105 - a placeholder
    else:
        first = f"sign in as the development superuser ({DEV_ADMIN_EMAIL} / {DEV_ADMIN_PASSWORD}) and try:"
        token = (
            f"  TOKEN=$({curl} -s -X POST {rest}/api/auth/login \\\n"
            f'      -d \'{{"email": "{DEV_ADMIN_EMAIL}", "password": "{DEV_ADMIN_PASSWORD}"}}\' \\\n'
            '      | python3 -c \'import json,sys; print(json.load(sys.stdin)["tokens"]["access_token"])\')'
        )
    return f"""{first}
{token}
  {curl} -s -X POST {rest}/api/workspaces -H "authorization: Bearer $TOKEN" -d '{{"name": "Acme"}}'
  {curl} -s {rest}/api/workspaces -H "authorization: Bearer $TOKEN"
"""
