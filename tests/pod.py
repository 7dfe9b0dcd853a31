"""A pod rehearsal without a container engine (this machine has none): a container of the
rendered manifests runs the way its image and its pod spec say, as far as Linux namespaces
allow without one.

What is the image's or the manifest's, taken from them and not restated here:
  * the image's filesystem: a venv at ``/opt/venv`` built from the build stage's context
    (exactly the files its ``COPY`` lines name) into a wheel, installed without dependencies,
    ``__pycache__`` removed as the Dockerfile does; its user and group (``useradd``), ``ENV``,
    ``WORKDIR``, ``ENTRYPOINT``, ``CMD`` and ``HEALTHCHECK``;
  * the container's ``command``/``args``, environment (ConfigMaps, Secrets, ``env``), volume
    mounts (each an empty writable directory, like an ``emptyDir``), ``runAsUser``/``Group``,
    ``readOnlyRootFilesystem``, ``allowPrivilegeEscalation: false`` (no new privileges) and
    ``capabilities: drop: [ALL]``.

What stands in for what cannot be had here, and is said where it is used:
  * the base image's Debian and Python are this machine's ``/usr`` and ``/etc`` (read-only);
  * the image's third-party packages are the test environment's, mounted read-only at
    ``/opt/deps`` (the same pinned versions; `pip install .` would fetch them again);
  * no network namespace: the pod shares loopback with the test, so its ports are remapped
    to free ones and the addresses of what is outside the pod (Kafka, PostgreSQL, S3,
    Triton, another Service) point at the test's servers.

The root is a fresh tmpfs in a private mount namespace (``unshare --mount``), the process is
``chroot``-ed into it and changes user with ``setpriv``. Needs root, as CI has."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.k8s_manifests import ROOT, Image, instructions

VENV = "/opt/venv"
DEPS = "/opt/deps"


@dataclass(frozen=True)
class Mount:
    host: Path
    path: str
    writable: bool


@dataclass
class Sandbox:
    """A container's view of this machine: a root of its own, built under ``work``."""

    work: Path
    venv: Path
    users: Sequence[str]  # /etc/passwd lines the image adds
    groups: Sequence[str]
    layers: Sequence[Mount] = ()  # more of the image's own directories (read-only)
    _etc: dict[str, Path] = field(init=False)

    def __post_init__(self) -> None:
        # /etc/passwd and /etc/group with the image's accounts (bound over the host's).
        self._etc = {}
        for name, extra in (("passwd", self.users), ("group", self.groups)):
            fd, path = tempfile.mkstemp(prefix=f"etc-{name}-", dir=self.work)
            os.fchmod(fd, 0o644)  # every user reads them
            with os.fdopen(fd, "w") as f:
                f.write(Path(f"/etc/{name}").read_text() + "".join(f"{x}\n" for x in extra))
            self._etc[name] = Path(path)

    def home_of(self, uid: int) -> str:
        """HOME as a container runtime sets it: the image's passwd entry, else ``/``."""
        for line in self.users:
            fields = line.split(":")
            if int(fields[2]) == uid:
                return fields[5]
        return "/"

    def command(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        uid: int,
        gid: int,
        workdir: str = "/",
        volumes: Sequence[Mount] = (),
        read_only_root: bool = True,
    ) -> list[str]:
        """The command line that runs ``argv`` in a fresh sandbox of this image."""
        root = Path(tempfile.mkdtemp(prefix="root-", dir=self.work))
        r = shlex.quote(str(root))
        lines = [
            "set -eu",
            f"mount -t tmpfs -o mode=0755 rootfs {r}",
            f"mkdir -m 1777 {r}/tmp",  # every base image has one (a volume may cover it)
        ]
        mounts = [Mount(Path(top), top, writable=False) for top in ("/usr", "/etc", "/sys")]
        mounts += [Mount(Path("/proc"), "/proc", True), Mount(Path("/dev"), "/dev", True)]
        for top in ("bin", "lib", "lib64", "sbin"):
            host = Path("/") / top
            if host.is_symlink():  # merged /usr
                lines.append(f"ln -s {shlex.quote(os.readlink(host))} {r}/{top}")
            elif host.exists():
                mounts.append(Mount(host, f"/{top}", writable=False))
        if not any(v.path == VENV for v in volumes):
            mounts.append(Mount(self.venv, VENV, writable=False))
        mounts += [
            Mount(Path(sysconfig.get_paths()["purelib"]), DEPS, writable=False),
            *self.layers,
            *volumes,
        ]
        for m in mounts:
            target = shlex.quote(f"{root}{m.path}")
            lines += [f"mkdir -p {target}", f"mount --rbind {shlex.quote(str(m.host))} {target}"]
            if not m.writable:
                lines.append(f"mount -o remount,bind,ro {target}")
        for name, path in self._etc.items():
            lines.append(f"mount --bind {shlex.quote(str(path))} {r}/etc/{name}")
        if read_only_root:
            lines.append(f"mount -o remount,ro {r}")
        setpriv = [
            "/usr/bin/setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "--no-new-privs",  # allowPrivilegeEscalation: false
            "--inh-caps=-all",  # capabilities: drop: [ALL]
            "--bounding-set=-all",
        ]
        full_env = {"HOME": self.home_of(uid), **env}
        inner = [
            *setpriv,
            "/usr/bin/env",
            "-i",
            f"--chdir={workdir}",
            *(f"{k}={v}" for k, v in full_env.items()),
            *argv,
        ]
        lines.append(f"exec chroot {r} {shlex.join(inner)}")
        script = "\n".join(lines)
        return ["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", script]


def image_accounts(dockerfile: Path) -> tuple[list[str], list[str]]:
    """The passwd and group lines the runtime stage's ``groupadd``/``useradd`` create."""
    run = " ".join(rest for word, rest in instructions(dockerfile) if word == "RUN")
    users, groups = [], []
    for gid, name in re.findall(r"groupadd --gid (\d+) (\w+)", run):
        groups.append(f"{name}:x:{gid}:")
    for uid, gid, shell, name in re.findall(
        r"useradd --uid (\d+) --gid (\d+) .*?--shell (\S+) (\w+)", run
    ):
        users.append(f"{name}:x:{uid}:{gid}::/home/{name}:{shell}")
    return users, groups


def build_image(image: Image, dockerfile: Path, work: Path) -> Sandbox:
    """Build the image's ``/opt/venv`` as its build stage does, under ``work``.

    The build context holds exactly what the build stage copies; the wheel is built from it
    (with this environment's setuptools, not an isolated download), then installed into a new
    venv inside a sandbox where it lives at ``/opt/venv``, as root, as ``docker build`` does.
    """
    context = work / "context"
    for name in image.context:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, context / name)
    wheels = work / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(wheels), str(context)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("*.whl")
    venv = work / "venv"
    venv.mkdir()
    users, groups = image_accounts(dockerfile)
    box = Sandbox(work=work, venv=venv, users=users, groups=groups)
    purelib = f"{VENV}/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    script = " && ".join(
        [
            f"{shlex.quote(sys._base_executable)} -m venv {VENV}",  # type: ignore[attr-defined]
            f"{VENV}/bin/pip install -q --no-cache-dir --no-deps --no-index /wheels/{wheel.name}",
            f"echo {DEPS} > {purelib}/zz_image_dependencies.pth",
            f"find {VENV} -name __pycache__ -prune -exec rm -rf {{}} +",
        ]
    )
    tmp = work / "build-tmp"
    tmp.mkdir()
    _build_run(
        box,
        script,
        path=image.env["PATH"],
        volumes=[
            Mount(venv, VENV, writable=True),
            Mount(wheels, "/wheels", writable=False),
            Mount(tmp, "/tmp", writable=True),
        ],
    )
    return box


def _build_run(box: Sandbox, script: str, *, path: str, volumes: Sequence[Mount]) -> None:
    """Run ``script`` as a build step does: as root, the root filesystem writable."""
    cmd = box.command(
        ["/bin/sh", "-c", script],
        env={"PATH": path},
        uid=0,
        gid=0,
        volumes=volumes,
        read_only_root=False,
    )
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"{script} failed:\n{out.stdout}\n{out.stderr}"


def build_step(box: Sandbox, dockerfile: Path, containing: str, output: str) -> Path:
    """Run the one command of ``dockerfile``'s ``RUN`` lines that mentions ``containing`` (a
    ``&&`` segment, taken verbatim), as root in a sandbox of ``box`` where ``output`` is
    writable; return the host directory that holds what it wrote at ``output``."""
    segments = [
        segment.strip()
        for word, rest in instructions(dockerfile)
        if word == "RUN"
        for segment in rest.split("&&")
        if containing in segment
    ]
    assert len(segments) == 1, f"{dockerfile.name}: {len(segments)} RUN commands with {containing}"
    host = box.work / ("layer" + output.replace("/", "-"))
    host.mkdir()
    _build_run(
        box, segments[0], path=f"{VENV}/bin:/usr/bin:/bin", volumes=[Mount(host, output, True)]
    )
    return host
