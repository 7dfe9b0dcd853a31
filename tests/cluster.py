"""The distributed deployment on one machine: analyzer, predictor, renderer and gateway as
separate processes on loopback, against a real broker and PostgreSQL. Used by the integration
tests and by scripts/bench.py."""

from __future__ import annotations

import io
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

import grpc
import httpx
import numpy as np
import soundfile as sf

from gateway.healthcheck import grpc_health
from services.common.bus import KafkaBus
from tests.infra import free_port, log_tail, start_process, stop_process, wait_until

ROLES = ("analyzer", "predictor", "renderer", "gateway")
TEST_TENANT = "tests"


def create_api_key(database_url: str, tenant: str, plan: str = "label") -> str:
    """A new API key of ``tenant`` in the gateway's database (what `mixpilot keys create`
    does), on the ``label`` plan by default: tests poll often."""
    from gateway.accounts import Accounts
    from gateway.store import JobStore

    store = JobStore(database_url)
    try:
        return Accounts(store.engine).create_key(tenant, label="tests", plan=plan)[0]
    finally:
        store.engine.dispose()


@dataclass
class Cluster:
    env: dict[str, str]
    workdir: Path
    gateway_url: str
    grpc_ports: dict[str, int]
    database_url: str
    bootstrap: str
    procs: dict[str, Popen[bytes]] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    api_key: str = ""

    @property
    def auth(self) -> dict[str, str]:
        """The headers of the test tenant's API key."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A request to the gateway (``path`` like ``/v1/jobs``) as the test tenant."""
        headers = {**self.auth, **kw.pop("headers", {})}
        return httpx.request(
            method,
            f"{self.gateway_url}{path}",
            headers=headers,
            timeout=kw.pop("timeout", 30),
            **kw,
        )

    def start(self, role: str) -> None:
        self.metrics_ports[role] = free_port()
        env = {
            **self.env,
            "MIXPILOT_METRICS_PORT": str(self.metrics_ports[role]),
            # One numba cache per role, as each pod has its own: processes compiling the same
            # kernels into one cache at once can load a half-written entry (seen: a segfault).
            "NUMBA_CACHE_DIR": str(self.workdir / "numba-cache" / role),
        }
        cmd = [sys.executable, "-m", "gateway.cli", role]
        self.procs[role] = start_process(cmd, env=env, log_path=self.workdir / f"{role}.log")

    def log(self, role: str) -> str:
        return log_tail(self.workdir / f"{role}.log", 40)

    def logs(self) -> str:
        return "\n".join(f"--- {r}\n{self.log(r)}" for r in ROLES)

    def _alive(self, role: str) -> None:
        if self.procs[role].poll() is not None:
            raise AssertionError(f"{role} exited:\n{self.log(role)}")

    def serving(self, role: str) -> bool:
        """The role's gRPC health says SERVING (raises grpc.RpcError if it does not answer)."""
        self._alive(role)
        return grpc_health(f"127.0.0.1:{self.grpc_ports[role]}", timeout_s=2) == "SERVING"

    def wait_serving(self, role: str, timeout_s: float = 90.0) -> None:
        wait_until(
            lambda: self.serving(role),
            timeout_s=timeout_s,
            interval_s=0.3,
            what=f"{role} to serve",
            ignore=(grpc.RpcError,),
        )

    def wait_gateway(self, timeout_s: float = 90.0) -> None:
        def ready() -> bool:
            self._alive("gateway")
            return httpx.get(f"{self.gateway_url}/readyz", timeout=2).status_code == 200

        wait_until(
            ready,
            timeout_s=timeout_s,
            interval_s=0.3,
            what="the gateway",
            ignore=(httpx.HTTPError,),
        )


@contextmanager
def running_cluster(
    bootstrap: str, database_url: str, workdir: Path, **extra_env: str
) -> Iterator[Cluster]:
    """Start the four services (MIXPILOT_* settings from ``extra_env`` on top of test
    defaults), wait until each is ready, stop them all on exit."""
    ports = {role: free_port() for role in ROLES}
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "MIXPILOT_KAFKA_BOOTSTRAP": bootstrap,
        "MIXPILOT_DATABASE_URL": database_url,
        "MIXPILOT_BLOB_URL": f"file://{workdir / 'blobs'}",
        "MIXPILOT_CACHE_DIR": str(workdir / "cache"),
        "MIXPILOT_GATEWAY_PORT": str(ports["gateway"]),
        "MIXPILOT_ANALYZER_PORT": str(ports["analyzer"]),
        "MIXPILOT_PREDICTOR_PORT": str(ports["predictor"]),
        "MIXPILOT_RENDERER_PORT": str(ports["renderer"]),
        # Re-renders and previews go from the gateway to the renderer over gRPC.
        "MIXPILOT_RENDERER_URL": f"127.0.0.1:{ports['renderer']}",
        "MIXPILOT_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "MIXPILOT_MAX_ATTEMPTS": "2",
        "MIXPILOT_RETRY_BACKOFF_S": "0.1",
        "MIXPILOT_TOPIC_PARTITIONS": "2",
        **extra_env,
    }
    c = Cluster(
        env=env,
        workdir=workdir,
        gateway_url=f"http://127.0.0.1:{ports['gateway']}",
        grpc_ports=ports,
        database_url=database_url,
        bootstrap=bootstrap,
    )
    try:
        for role in ROLES:
            c.start(role)
        for role in ("analyzer", "predictor", "renderer"):
            c.wait_serving(role)
        c.wait_gateway()
        c.api_key = create_api_key(database_url, TEST_TENANT)
        yield c
    finally:
        for proc in c.procs.values():
            stop_process(proc)


# -- helpers of the tests that drive a cluster ----------------------------------------


def wav_bytes(audio: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio.T, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def submit(c: Cluster, data: bytes, name: str = "song.wav", **form: str) -> httpx.Response:
    return c.api(
        "POST", "/v1/jobs", files={"file": (name, data, "audio/wav")}, data=form, timeout=60
    )


def wait_state(c: Cluster, job_id: str, states: set[str], timeout_s: float = 180) -> dict:
    seen: dict = {}

    def reached() -> bool:
        seen.update(c.api("GET", f"/v1/jobs/{job_id}", timeout=5).json())
        return seen["state"] in states

    try:
        wait_until(
            reached,
            timeout_s=timeout_s,
            interval_s=0.1,
            what=f"job in {states}",
            ignore=(httpx.HTTPError,),
        )
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last: {seen}\n{c.logs()}") from None
    return seen


def messages_for(bootstrap: str, topic: str, key: str, timeout_s: float = 30) -> list:
    """All messages with ``key`` on ``topic``, read from the beginning by a fresh group."""
    bus = KafkaBus(bootstrap)
    consumer = bus.consumer([topic], group_id=f"test-reader-{uuid.uuid4().hex}")
    found: list = []
    deadline = time.monotonic() + timeout_s
    idle_since: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(1.0)
            found.extend(m for m in batch if m.key == key)
            if batch:
                idle_since = None
            elif found:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 3:
                    break
    finally:
        consumer.close()
    return found
