"""A local Triton Inference Server for development and the tests: the ``tritonserver`` binary
(2.51, with its Python backend) that the ``nvidia-pytriton`` wheel ships.

:func:`server_command` lays out the backend directory the binary needs and returns the command
line and environment; ``mixpilot triton`` execs it in the foreground, the integration tests
start it as a child process. Two details make the Python backend work from a virtual
environment (``docs/triton.md``):

* the backend's stub process embeds Debian's ``libpython3.11``; it finds this environment's
  packages (torch, mixpilot) because the directory of this interpreter comes first on
  ``PATH``: the embedded interpreter takes its prefix from the ``python3`` it finds there, and
  so reads the venv's ``pyvenv.cfg``. (A pyenv-built venv does not work: its standard library
  does not match Debian's ``libpython``.)
* the wheel's shared libraries (``nvidia_pytriton.libs``) go on ``LD_LIBRARY_PATH``.

Production runs NVIDIA's Triton container instead, with the repository of
``mixpilot triton-repo --kind gpu``.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import ConfigurationError

INSTALL_HINT = "install it with: pip install nvidia-pytriton==0.7.0 (part of mixpilot[test])"


@dataclass(frozen=True)
class Ports:
    grpc: int = 8001
    http: int = 8000
    metrics: int = 8002


def _pytriton_dir() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise ConfigurationError(
            f"no tritonserver binary: nvidia-pytriton is missing; {INSTALL_HINT}"
        ) from exc
    return Path(pytriton.__file__).resolve().parent


def prepare_backends(backend_dir: Path) -> Path:
    """Copy the Python backend (library, utilities and this interpreter's stub) into
    ``backend_dir/python`` (idempotent) and return ``backend_dir``."""
    root = _pytriton_dir() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ConfigurationError(f"nvidia-pytriton has no Python backend stub for Python {version}")
    target = Path(backend_dir) / "python"
    target.mkdir(parents=True, exist_ok=True)
    sources = [*sorted((root / "backends" / "python").glob("*.so")), stub]
    sources += sorted((root / "backends" / "python").glob("*.py"))
    for source in sources:
        destination = target / source.name
        if not destination.exists() or destination.stat().st_size != source.stat().st_size:
            shutil.copy2(source, destination)
    return Path(backend_dir)


def server_command(
    repository: Path,
    backend_dir: Path,
    ports: Ports = Ports(),
    *,
    host: str = "127.0.0.1",
    explicit: bool = False,
    log_verbose: int = 0,
) -> tuple[list[str], dict[str, str]]:
    """The ``tritonserver`` command line and environment serving ``repository`` on ``host``.

    ``explicit`` starts it in explicit model-control mode (every model loaded at start, and
    models can then be unloaded and loaded through the API: the tests use it).
    """
    pytriton_dir = _pytriton_dir()
    binary = pytriton_dir / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        raise ConfigurationError(f"no tritonserver binary at {binary}; {INSTALL_HINT}")
    prepare_backends(backend_dir)
    libs = pytriton_dir.parent / "nvidia_pytriton.libs"
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p
    )
    cmd = [
        str(binary),
        f"--model-repository={Path(repository).resolve()}",
        f"--backend-directory={Path(backend_dir).resolve()}",
        f"--grpc-address={host}",
        f"--grpc-port={ports.grpc}",
        f"--http-address={host}",
        f"--http-port={ports.http}",
        f"--metrics-address={host}",
        f"--metrics-port={ports.metrics}",
        "--allow-metrics=true",
        f"--log-verbose={log_verbose}",
    ]
    if explicit:
        cmd += ["--model-control-mode=explicit", "--load-model=*"]
    return cmd, env
