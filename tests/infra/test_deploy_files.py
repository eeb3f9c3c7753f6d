"""The deployment files are checked without a container engine and without the network:
Compose against the Compose specification's JSON schema, the Kubernetes manifests with
kubernetes-validate (strict), and against each other and the code: every variable they set
is one the settings read (and a value the settings accept), ports and probes agree with the
entrypoint and the apps, draining fits in the grace periods. Each check is also shown to
refuse a copy of the file with one mistake in it."""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from starlette.applications import Starlette

from booking.app import create_app as booking_app
from booking.settings import BookingSettings
from machiai.errors import Busy
from tests.infra import deploy_files as files
from waitroom.app import create_app as waitroom_app
from waitroom.settings import WaitroomSettings

# The Compose specification's schema, vendored: infra/schemas/compose-spec.json is the file
# ecs_composex/specs/compose-spec.json of the PyPI package ecs-composex 1.1.9 (a copy of
# compose-spec/compose-spec's schema/compose-spec.json, Apache-2.0, a 2024 revision: it has
# `include`, `develop`, `label_file` and the post_start/pre_stop hooks). Its hash is pinned so
# nobody loosens it by hand; to update, take a newer release of the package (infra/README.md).
COMPOSE_SCHEMA_SHA256 = "a85a0e558502b7fec90b3ad4095d721e31749e9a305b1d80e09c1e64f939b92d"
# What Compose needs from the shell to interpolate the file (a made-up key of valid length).
COMPOSE_SHELL = {"MACHIAI_SECRET_KEYS": "compose-check-" + "k" * 40}
# The probes of a serving container and the routes they must hit.
PROBES = {"readinessProbe": "/health/ready", "livenessProbe": "/health"}


def compose_errors(document: Any) -> list[str]:
    schema = json.loads(files.COMPOSE_SCHEMA.read_text("utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    # No format checker: the schema's "duration" is Compose's (10s, 1m30s), not ISO 8601.
    validator = validator_class(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def k8s_errors(document: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(document, files.KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{document['kind']} {'/'.join(map(str, e.path))}: {e.message}"]
    return []


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in files.k8s_documents() if d["kind"] == kind}


def command_of(container: dict[str, Any]) -> str:
    (command,) = container["args"]
    assert command in files.COMMANDS
    return str(command)


def pod_containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) of every workload in the manifests."""
    found = []
    for doc in files.k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            pod = doc["spec"]["template"]["spec"]
            found += [(pod, c) for c in pod["containers"]]
    return found


def k8s_container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment: the image's ENV, then envFrom, then env (Kubernetes'
    order of precedence)."""
    env = files.image_env()
    secrets = by_kind("Secret")
    for source in container.get("envFrom", []):
        env.update(secrets[source["secretRef"]["name"]]["stringData"])
    env.update({item["name"]: item["value"] for item in container.get("env", [])})
    return env


def compose_app_services() -> dict[str, dict[str, Any]]:
    compose = files.compose_file(COMPOSE_SHELL)
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == "machiai:latest"
    }


def app_of(command: str, environ: dict[str, str]) -> Starlette:
    """The app ``command`` serves, built (not started) from the container's environment."""
    if command == "waitroom":
        return waitroom_app(WaitroomSettings.from_env(environ))
    return booking_app(BookingSettings.from_env(environ))


def route_paths(app: Starlette) -> set[str]:
    return {path for r in app.routes if isinstance(path := getattr(r, "path", None), str)}


# --- the files against their specifications --------------------------------------------


def test_the_vendored_compose_schema_is_the_released_one() -> None:
    digest = hashlib.sha256(files.COMPOSE_SCHEMA.read_bytes()).hexdigest()
    assert digest == COMPOSE_SCHEMA_SHA256


def test_compose_file_follows_the_compose_specification() -> None:
    assert compose_errors(files.load_yaml(files.COMPOSE)) == []
    # And after interpolation, as Compose validates it.
    assert compose_errors(files.compose_file(COMPOSE_SHELL)) == []


@pytest.mark.parametrize(
    ("where", "mistake"),
    [
        ("a misspelt service key", lambda c: c["services"]["waitroom"].update(healthchek={})),
        ("a misspelt top-level key", lambda c: c.update(service=c["services"])),
        ("ports as a mapping", lambda c: c["services"]["proxy"].update(ports={"8000": 8000})),
        (
            "an unknown depends_on condition",
            lambda c: c["services"]["migrate"]["depends_on"]["postgres"].update(
                condition="service_ready"
            ),
        ),
    ],
)
def test_a_compose_file_with_a_mistake_is_refused(where: str, mistake: Any) -> None:
    document = files.load_yaml(files.COMPOSE)
    mistake(document)
    assert compose_errors(document) != [], where


def test_kubernetes_manifests_validate_strictly() -> None:
    documents = files.k8s_documents()
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == sorted(
        ["Secret", "Job", "Service", "Service"]
        + ["Deployment"] * 3
        + ["PodDisruptionBudget"] * 2
        + ["HorizontalPodAutoscaler"] * 2
    )
    assert [e for d in documents for e in k8s_errors(d)] == []


def _rename(mapping: dict[str, Any], old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


def _first_container(doc: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return container


MANIFEST_MISTAKES: list[tuple[str, str, Any]] = [
    ("Secret", "machiai", lambda d: _rename(d, "stringData", "stringdata")),
    ("Job", "machiai-migrate", lambda d: _rename(d["spec"], "backoffLimit", "backofLimit")),
    ("Deployment", "waitroom", lambda d: _rename(_first_container(d), "readinessProbe", "rp")),
    (
        "Deployment",
        "booking",
        lambda d: _rename(_first_container(d)["lifecycle"], "preStop", "prestop"),
    ),
    ("Deployment", "deliver", lambda d: d["spec"].update(replicas="one")),
    ("Service", "waitroom", lambda d: _rename(d["spec"]["ports"][0], "targetPort", "target")),
    ("PodDisruptionBudget", "booking", lambda d: d["spec"].update(maxUnavailble=1)),
    ("HorizontalPodAutoscaler", "booking", lambda d: _rename(d["spec"], "maxReplicas", "max")),
]


@pytest.mark.parametrize(("kind", "name", "mistake"), MANIFEST_MISTAKES)
def test_a_manifest_with_a_mistake_is_refused(kind: str, name: str, mistake: Any) -> None:
    document = copy.deepcopy(by_kind(kind)[name])
    assert k8s_errors(document) == []
    mistake(document)
    assert k8s_errors(document) != []


def test_every_manifest_kind_has_a_mistake_tried() -> None:
    assert {(d["kind"], d["metadata"]["name"]) for d in files.k8s_documents()} >= {
        (kind, name) for kind, name, _ in MANIFEST_MISTAKES
    }
    assert {d["kind"] for d in files.k8s_documents()} == {k for k, _, _ in MANIFEST_MISTAKES}


def test_the_entrypoint_is_valid_shell_and_a_broken_copy_is_not(tmp_path: Path) -> None:
    assert subprocess.run(["sh", "-n", str(files.ENTRYPOINT)]).returncode == 0
    broken = tmp_path / "entrypoint.sh"
    broken.write_text(files.ENTRYPOINT.read_text("utf-8").replace("esac", "esca"))
    assert subprocess.run(["sh", "-n", str(broken)], capture_output=True).returncode != 0


# --- the files against the code and each other -----------------------------------------


def test_every_variable_kubernetes_sets_is_read_and_accepted() -> None:
    """Per container: each variable of its own ``env`` is read by its command's settings
    (run on the container's environment, so every value is also validated); each variable
    of the shared Secret is read by at least one command that loads it."""
    secret_readers: dict[str, set[str]] = {}
    for _, container in pod_containers():
        command = command_of(container)
        environ = k8s_container_env(container)
        reads = files.settings_reads(command, environ)
        own = {item["name"] for item in container.get("env", [])} | set(files.image_env())
        assert own - reads == set(), f"{command} sets variables nothing reads"
        for source in container.get("envFrom", []):
            secret = by_kind("Secret")[source["secretRef"]["name"]]
            for name in secret["stringData"]:
                secret_readers.setdefault(name, set())
                if name in reads:
                    secret_readers[name].add(command)
    assert {name for name, readers in secret_readers.items() if not readers} == set()


def test_every_variable_compose_sets_is_read_and_accepted() -> None:
    compose = files.load_yaml(files.COMPOSE)
    shared = set(compose["x-core-env"])
    shared_readers: dict[str, set[str]] = {name: set() for name in shared}
    services = compose_app_services()
    assert set(services) == {"migrate", "waitroom", "booking", "deliver"}
    for name, service in services.items():
        (command,) = service["command"]
        environ = {**files.image_env(), **service["environment"]}
        reads = files.settings_reads(command, environ)
        own = set(service["environment"]) - shared
        assert own - reads == set(), f"{name} sets variables nothing reads"
        for var in shared & reads:
            shared_readers[var].add(command)
    assert {name for name, readers in shared_readers.items() if not readers} == set()


def test_the_variable_check_refuses_a_variable_nobody_reads() -> None:
    (container,) = [c for _, c in pod_containers() if command_of(c) == "waitroom"]
    environ = {**k8s_container_env(container), "WAITROOM_POLL_MAX": "60"}  # _S missing
    assert "WAITROOM_POLL_MAX" not in files.settings_reads("waitroom", environ)


def test_ports_agree_everywhere() -> None:
    ports = {command: files.entrypoint_port(command) for command in files.SERVICES}
    assert len(set(ports.values())) == len(ports)
    exposed = {
        int(p)
        for word, rest in files.dockerfile_instructions()
        if word == "EXPOSE"
        for p in rest.split()
    }
    assert exposed == set(ports.values())
    # Kubernetes: container port, both probes, the Service's target.
    deployments = by_kind("Deployment")
    services = by_kind("Service")
    for command, port in ports.items():
        container = _first_container(deployments[command])
        assert command_of(container) == command
        assert [p["containerPort"] for p in container["ports"]] == [port]
        for probe in PROBES:
            assert container[probe]["httpGet"]["port"] == port
        service = services[command]
        assert (
            service["spec"]["selector"] == deployments[command]["spec"]["selector"]["matchLabels"]
        )
        assert [p["targetPort"] for p in service["spec"]["ports"]] == [port]
    # Compose: what each service exposes and checks, what the proxy forwards to.
    compose = compose_app_services()
    site = files.PROXY_SITE.read_text("utf-8")
    for command, port in ports.items():
        assert compose[command]["expose"] == [str(port)]
        assert f"http://127.0.0.1:{port}/health/ready" in compose[command]["healthcheck"]["test"][3]
        assert f"set $machiai_upstream http://{command}:{port};" in site
    listens = sorted(int(p) for p in re.findall(r"^\s*listen (\d+);", site, re.MULTILINE))
    proxy = files.compose_file(COMPOSE_SHELL)["services"]["proxy"]
    assert sorted(int(p.split(":")[1]) for p in proxy["ports"]) == listens


def test_probes_point_at_the_health_routes_of_the_app_they_probe() -> None:
    for _, container in pod_containers():
        command = command_of(container)
        if command not in files.SERVICES:
            assert not any(probe in container for probe in PROBES)
            continue
        paths = route_paths(app_of(command, k8s_container_env(container)))
        for probe, path in PROBES.items():
            assert container[probe]["httpGet"]["path"] == path
            assert path in paths


def test_draining_fits_in_the_grace_periods() -> None:
    """preStop (the endpoints catch up) + uvicorn's drain < the grace period before
    SIGKILL; Compose has no preStop, its stop_grace_period covers the drain."""
    drain_s = files.entrypoint_drain_s()
    for pod, container in pod_containers():
        if command_of(container) not in files.SERVICES:
            continue
        sleep = container["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep[0] == "sleep"
        assert int(sleep[1]) + drain_s < pod["terminationGracePeriodSeconds"]
    for command, service in compose_app_services().items():
        if command in files.SERVICES:
            grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
            assert grace and drain_s < int(grace.group(1))


def test_each_service_has_a_disruption_budget_and_an_autoscaler() -> None:
    deployments = by_kind("Deployment")
    budgets = by_kind("PodDisruptionBudget")
    scalers = by_kind("HorizontalPodAutoscaler")
    for command in files.SERVICES:
        labels = deployments[command]["spec"]["template"]["metadata"]["labels"]
        selector = budgets[command]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        target = scalers[command]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", command)
        # The budget must leave a pod to evict at the autoscaler's floor.
        assert budgets[command]["spec"]["maxUnavailable"] >= 1
        assert scalers[command]["spec"]["minReplicas"] >= 2


def test_the_image_runs_as_the_user_kubernetes_requires() -> None:
    user = [rest for word, rest in files.dockerfile_instructions() if word == "USER"]
    assert user and user[-1].split(":")[0].isdigit()
    for pod, _ in pod_containers():
        assert pod["securityContext"]["runAsUser"] == int(user[-1].split(":")[0])


def test_the_image_copies_what_exists_and_what_the_context_sends() -> None:
    """Every COPY from the build context names a file of the repository that the
    Dockerfile's ignore file lets through (the context sends nothing else)."""
    copied = [rest for word, rest in files.dockerfile_instructions() if word == "COPY"]
    allowed = {
        line[1:].rstrip("/")
        for line in (files.INFRA / "Dockerfile.dockerignore").read_text("utf-8").splitlines()
        if line.startswith("!")
    }
    root = files.INFRA.parent
    for line in copied:
        if "--from=" in line:
            continue  # from an earlier stage, not the context
        sources = [w for w in line.split() if not w.startswith("--")][:-1]
        for source in sources:
            assert (root / source).exists(), f"Dockerfile copies {source}, which is missing"
            assert source.rstrip("/") in allowed, f"{source} is not sent in the build context"
    assert any("infra/entrypoint.sh /usr/local/bin/machiai-entrypoint" in c for c in copied)


def test_compose_proxy_is_the_only_trusted_forwarder() -> None:
    compose = files.compose_file(COMPOSE_SHELL)
    (subnet,) = compose["networks"]["default"]["ipam"]["config"]
    proxy_ip = compose["services"]["proxy"]["networks"]["default"]["ipv4_address"]
    assert ipaddress.ip_address(proxy_ip) in ipaddress.ip_network(subnet["subnet"])
    for command, var in (
        ("waitroom", "WAITROOM_TRUSTED_PROXIES"),
        ("booking", "BOOKING_TRUSTED_PROXIES"),
    ):
        assert compose["services"][command]["environment"][var] == proxy_ip


def test_the_proxy_lets_a_registry_import_through() -> None:
    """nginx's body limit on booking is above booking's own (the largest registry file)."""
    site = files.PROXY_SITE.read_text("utf-8")
    booking_server = site.split("http://booking:")[1].split("}")[0]
    (limit,) = re.findall(r"client_max_body_size (\d+)m;", booking_server)
    default = BookingSettings.from_env(
        {"REDIS_URL": "redis://r:6379/0", "DATABASE_URL": "postgresql://p/m"}
    ).registry_max_bytes
    assert int(limit) * 1_048_576 >= default


def test_the_busy_page_and_the_proxy_agree() -> None:
    page = files.BUSY_PAGE.read_text("utf-8")
    common = files.PROXY_COMMON.read_text("utf-8")
    site = files.PROXY_SITE.read_text("utf-8")
    (refresh,) = re.findall(r'<noscript><meta http-equiv="refresh" content="(\d+)">', page)
    (script_ms,) = re.findall(r"every_ms = (\d+);", page)
    retry_after = set(re.findall(r"add_header Retry-After (\d+) always;", common))
    assert retry_after == {refresh} == {str(int(script_ms) // 1000)}
    assert re.search(r'<html lang="ja">', page) and 'lang="en"' in page
    words = page.replace("<wbr>", "")  # break opportunities of the Japanese lines
    assert "このページを開いたままお待ちください" in words and "keep this page open" in words
    assert page.count("<script") == 1 and len(page.encode()) < 5_000
    # The JSON answer speaks the services' own `busy` words.
    assert Busy.message_ja in site and Busy.message_en in site
    assert "alias /usr/share/nginx/machiai/busy.html;" in common
    proxy = files.compose_file(COMPOSE_SHELL)["services"]["proxy"]
    assert "./static:/usr/share/nginx/machiai:ro" in proxy["volumes"]
