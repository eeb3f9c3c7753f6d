"""The deployment files of infra/, read as the tools that use them would read them.

Compose: YAML with its merge keys, then the interpolation Compose does (``${VAR:-default}``,
``${VAR:?message}``). Kubernetes: every document of the manifests. The entrypoint: which
port and drain time each command gets. And which environment variables each command's
settings actually read, found by running those settings on the container's environment.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from booking.delivery.settings import DeliverySettings
from booking.settings import BookingSettings
from machiai.settings import RunnerSettings
from waitroom.settings import WaitroomSettings

INFRA = Path(__file__).resolve().parents[2] / "infra"
COMPOSE = INFRA / "compose.yaml"
K8S = INFRA / "k8s" / "machiai.yaml"
ENTRYPOINT = INFRA / "entrypoint.sh"
DOCKERFILE = INFRA / "Dockerfile"
PROXY_SITE = INFRA / "proxy" / "machiai.conf"
PROXY_COMMON = INFRA / "proxy" / "common.conf"
BUSY_PAGE = INFRA / "static" / "busy.html"
COMPOSE_SCHEMA = INFRA / "schemas" / "compose-spec.json"

# The Kubernetes version the manifests are validated against (kubernetes-validate bundles
# the schemas of each minor version; strict = unknown fields refused).
KUBERNETES_VERSION = "1.33"

# Commands of the image (infra/entrypoint.sh) that serve HTTP, and the rest.
SERVICES = ("waitroom", "booking")
COMMANDS = ("waitroom", "booking", "deliver", "migrate")
# Read by Python itself, not by machiai's settings.
PYTHON_VARS = frozenset({"PYTHONUNBUFFERED"})

_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$\$")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text("utf-8"))


def k8s_documents(text: str | None = None) -> list[dict[str, Any]]:
    source = K8S.read_text("utf-8") if text is None else text
    return [doc for doc in yaml.safe_load_all(source) if doc is not None]


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """``value`` with Compose's interpolation applied to every string in it."""
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        given = environ.get(name)
        unset = given is None or (op is not None and op.startswith(":") and given == "")
        if op in (":-", "-"):
            return arg if unset else str(given)
        if op in (":?", "?") and unset:
            raise ValueError(f"compose needs {name}: {arg}")
        return "" if given is None else given

    return _INTERPOLATION.sub(one, value)


def compose_file(environ: Mapping[str, str]) -> dict[str, Any]:
    loaded: dict[str, Any] = interpolate(load_yaml(COMPOSE), environ)
    return loaded


def image_env() -> dict[str, str]:
    """The ``ENV`` of the Dockerfile's last stage: every container starts with it."""
    last_stage = DOCKERFILE.read_text("utf-8").split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for line in last_stage.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def dockerfile_instructions() -> Iterator[tuple[str, str]]:
    for line in DOCKERFILE.read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            yield word.upper(), rest.strip()


def _case_branch(command: str) -> str:
    text = ENTRYPOINT.read_text("utf-8")
    match = re.search(rf"^\s*{re.escape(command)}\)\s*(.*?);;", text, re.MULTILINE)
    assert match, f"infra/entrypoint.sh has no `{command})` branch"
    return match.group(1)


def entrypoint_port(command: str) -> int:
    """The port ``command`` listens on when the environment does not say otherwise."""
    match = re.search(r"\$\{\w+_PORT:-(\d+)\}", _case_branch(command))
    assert match, f"infra/entrypoint.sh gives `{command}` no port"
    return int(match.group(1))


def entrypoint_drain_s() -> int:
    match = re.search(r"^DRAIN_S=(\d+)$", ENTRYPOINT.read_text("utf-8"), re.MULTILINE)
    assert match, "infra/entrypoint.sh sets no DRAIN_S"
    assert '--timeout-graceful-shutdown "$DRAIN_S"' in ENTRYPOINT.read_text("utf-8")
    return int(match.group(1))


def entrypoint_vars(command: str) -> set[str]:
    """Variables the entrypoint itself reads for ``command``."""
    text = ENTRYPOINT.read_text("utf-8")
    branch = _case_branch(command)
    names = set(re.findall(r"\$\{(\w+)", branch))
    if branch.startswith("serve "):
        outside_case = text.split("\ncase ")[0]
        names |= set(re.findall(r"\$\{(\w+)", outside_case))
    return names


class _Recording(Mapping[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self._environ[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def settings_reads(command: str, environ: Mapping[str, str]) -> set[str]:
    """Every variable ``command`` reads, its settings run on ``environ`` (which they also
    validate: a bad value raises SettingsError naming it), plus the entrypoint's own."""
    recording = _Recording(environ)
    if command == "waitroom":
        WaitroomSettings.from_env(recording)
    elif command == "booking":
        BookingSettings.from_env(recording)
    elif command == "deliver":  # machiai/cli.py _cmd_deliver
        RunnerSettings.from_env(recording)
        DeliverySettings.from_env(recording)
    elif command == "migrate":  # machiai/cli.py _cmd_migrate
        RunnerSettings.from_env(recording)
    else:
        raise AssertionError(f"unknown command {command!r}")
    return recording.read | entrypoint_vars(command) | PYTHON_VARS


def nginx_binary() -> Path | None:
    """Debian's nginx: on PATH, or unpacked into the venv by ``./machiai.sh test``."""
    found = shutil.which("nginx")
    unpacked = Path(sys.prefix) / "nginx" / "usr" / "sbin" / "nginx"
    binary = Path(found) if found else unpacked
    if not binary.exists():
        return None
    # Unpacked, not installed: a library it needs may be missing on this machine.
    runs = subprocess.run([str(binary), "-v"], capture_output=True, timeout=30)
    return binary if runs.returncode == 0 else None
