"""The dev overlay's pods, rehearsed on this machine (`tests/pod.py` says how, and what stands
in for what): the images' venv is built from their Dockerfiles' build context, and each
container runs as its image and its manifest say (user, read-only root, volumes, environment
from the ConfigMap and Secrets, command and args) against a real broker, PostgreSQL and S3
(moto's server). The Triton pod's init container writes the model repository; Triton serves it
with the manifest's args, the image's entrypoint, environment and ``/opt/backends`` (made by the
Dockerfile's own command), on the same Triton 2.51 as NVIDIA's image, from the nvidia-pytriton
wheel.

An operator's first hour, checked: every pod passes its startup, readiness and liveness probes
within the manifest's startup budget and its image's HEALTHCHECK passes; `kubectl exec
deploy/gateway -- mixpilot keys create` makes a key; a job goes through every stage with its
audio in S3 and its AI versions from Triton; the web UI and the metrics are served; and nothing
tried to write outside a volume."""

from __future__ import annotations

import io
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from subprocess import Popen
from typing import Any
from urllib.parse import urlsplit

import boto3
import grpc
import httpx
import psycopg
import pytest
import soundfile as sf

from gateway.healthcheck import grpc_health
from services.common.loudness import integrated_loudness, true_peak_dbtp
from services.predictor.inference import AI_VERSIONS
from tests.cluster import wav_bytes
from tests.infra import (
    free_port,
    log_tail,
    start_or_fail,
    start_process,
    start_tansu,
    stop_process,
    wait_until,
)
from tests.k8s_manifests import (
    DOCKER,
    containers,
    env_of,
    final_stage,
    image_of,
    instructions,
    named,
    render,
)
from tests.pod import DEPS, VENV, Mount, Sandbox, build_image, build_step
from tests.signals import little_song

OVERLAY = "dev"
STAGES = ("analyzer", "predictor", "renderer")
SERVICES = (*STAGES, "gateway")
#: The settings that hold a port the code listens on: a pod's own address is loopback here.
PORT_SETTINGS = {
    "analyzer": "MIXPILOT_ANALYZER_PORT",
    "predictor": "MIXPILOT_PREDICTOR_PORT",
    "renderer": "MIXPILOT_RENDERER_PORT",
    "gateway": "MIXPILOT_GATEWAY_PORT",
}


@dataclass
class Pod:
    name: str
    box: Sandbox  # its image
    container: dict[str, Any]
    spec: dict[str, Any]
    env: dict[str, str]
    ports: dict[int, int]  # containerPort -> port on this machine
    volumes: list[Mount]
    log: Path
    argv: list[str] = field(default_factory=list)
    process: Popen[bytes] | None = None
    ready_after_s: float = 0.0

    @property
    def user(self) -> tuple[int, int]:
        ctx = self.spec["securityContext"]
        return ctx["runAsUser"], ctx["runAsGroup"]

    def command(self, argv: list[str]) -> list[str]:
        uid, gid = self.user
        return self.box.command(
            argv,
            env=self.env,
            uid=uid,
            gid=gid,
            workdir=image_of(_image(self.container)).workdir,
            volumes=self.volumes,
            read_only_root=self.container["securityContext"].get("readOnlyRootFilesystem", False),
        )

    def exec(self, argv: list[str], timeout_s: float = 60) -> subprocess.CompletedProcess:
        """`kubectl exec` into this pod: a process of its image with its environment."""
        cmd = self.command(argv)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)

    def start(self) -> None:
        self.process = start_process(self.command(self.argv), log_path=self.log)


@dataclass
class Rehearsal:
    docs: tuple[dict[str, Any], ...]
    pods: dict[str, Pod] = field(default_factory=dict)
    bucket: str = ""
    s3_endpoint: str = ""

    def gateway(self, path: str) -> str:
        return f"http://127.0.0.1:{self.pods['gateway'].ports[8080]}{path}"


def _image(container: dict[str, Any]) -> Path:
    name = container["image"].rsplit("/", 1)[1].split(":")[0].removeprefix("mixpilot-")
    return DOCKER / f"{name}.Dockerfile"


def _argv(container: dict[str, Any]) -> list[str]:
    """What Kubernetes runs: ``command`` replaces ENTRYPOINT, ``args`` replaces CMD."""
    image = image_of(_image(container))
    if "command" in container:
        return [*container["command"], *container.get("args", [])]
    return [*image.entrypoint, *container.get("args", image.cmd)]


def _pod(
    docs: tuple[dict[str, Any], ...],
    box: Sandbox,
    name: str,
    container: dict[str, Any],
    spec: dict[str, Any],
    secrets: dict[str, dict[str, str]],
    outside: dict[str, str],
    ports: dict[int, int],
    work: Path,
) -> Pod:
    """``container`` of the pod ``name``: its environment (image, manifest, then ``outside``),
    its ports (the metrics port made its own), and its volumes (one directory per volume of the
    pod, shared by its containers, owned through fsGroup)."""
    image = image_of(_image(container))
    env = {**image.env, **env_of(docs, container, secrets), **outside}
    ports = dict(ports)
    for port in container.get("ports", []):
        if port.get("name") == "metrics":  # every pod has its own address in a cluster
            ports[port["containerPort"]] = free_port()
            env["MIXPILOT_METRICS_PORT"] = str(ports[port["containerPort"]])
    uid, gid = spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]
    volumes = []
    for mount in container.get("volumeMounts", []):
        host = work / f"{name}-{mount['name']}"
        if not host.exists():
            host.mkdir(parents=True)
            os.chown(host, uid, gid)
        volumes.append(Mount(host, mount["mountPath"], writable=True))
    pod = Pod(name, box, container, spec, env, ports, volumes, work / f"{name}.log")
    pod.argv = _argv(container)
    return pod


def _probe(pod: Pod, probe: dict[str, Any]) -> bool:
    """One try of a Kubernetes probe, against the port this pod's container port maps to."""
    assert pod.process is not None
    if pod.process.poll() is not None:
        raise AssertionError(f"{pod.name} exited:\n{log_tail(pod.log, 40)}")
    named_ports = {p["name"]: p["containerPort"] for p in pod.container["ports"]}
    if "grpc" in probe:
        status = grpc_health(
            f"127.0.0.1:{pod.ports[probe['grpc']['port']]}",
            service=probe["grpc"].get("service", ""),
            timeout_s=probe.get("timeoutSeconds", 1),
        )
        return status == "SERVING"
    get = probe["httpGet"]
    port = pod.ports[named_ports.get(get["port"], get["port"])]
    answer = httpx.get(
        f"http://127.0.0.1:{port}{get['path']}", timeout=probe.get("timeoutSeconds", 1)
    )
    return 200 <= answer.status_code < 400


def _wait_ready(pods: list[Pod], started: float) -> None:
    """Each pod's startup probe, then its readiness probe, within its startup budget
    (failureThreshold × periodSeconds from ``started``); records when each became ready."""
    waiting = list(pods)
    while waiting:
        for pod in list(waiting):
            startup = pod.container["startupProbe"]
            budget = startup.get("failureThreshold", 3) * startup.get("periodSeconds", 10)
            try:
                ready = _probe(pod, startup) and _probe(pod, pod.container["readinessProbe"])
            except (grpc.RpcError, httpx.HTTPError):
                ready = False
            if ready:
                pod.ready_after_s = time.monotonic() - started
                waiting.remove(pod)
            elif time.monotonic() - started > budget:
                raise AssertionError(
                    f"{pod.name} not ready within its startup budget of {budget} s:\n"
                    + log_tail(pod.log, 40)
                )
        time.sleep(0.2)


def _triton_pod(docs: tuple[dict[str, Any], ...], box: Sandbox, work: Path) -> Pod:
    """The Triton pod: the init container (predictor image) writes the model repository into
    the pod's volume; the Triton image then serves it with the manifest's args.

    The Triton image is NVIDIA's plus a venv and ``/opt/backends``
    (deploy/docker/triton.Dockerfile). Here ``/opt/backends`` is made by that Dockerfile's own
    ``prepare_backends`` command, and the server is the same Triton 2.51 from the nvidia-pytriton
    wheel (NVIDIA's ``/opt/tritonserver/bin`` stands there on PATH), with its libraries where the
    image's LD_LIBRARY_PATH names them in the image's venv."""
    spec = named(docs, "Deployment", "triton")["spec"]["template"]["spec"]
    init = _pod(docs, box, "triton", spec["initContainers"][0], spec, {}, {}, {}, work)
    out = init.exec(init.argv, timeout_s=180)
    assert out.returncode == 0, out.stdout + out.stderr
    dockerfile = DOCKER / "triton.Dockerfile"
    image_work = work / "triton-image"
    image_work.mkdir()
    builder = Sandbox(work=image_work, venv=box.venv, users=(), groups=())
    backends = build_step(builder, dockerfile, "prepare_backends(Path", "/opt/backends")
    triton_box = replace(builder, layers=[Mount(backends, "/opt/backends", writable=False)])
    image_env = image_of(dockerfile).env
    container = spec["containers"][0]
    ports = {p["containerPort"]: free_port() for p in container["ports"]}
    standing_in = {
        "PATH": image_env["PATH"] + f":{DEPS}/pytriton/tritonserver/bin",
        "LD_LIBRARY_PATH": re.sub(
            rf"{VENV}/lib/python[\d.]+/site-packages/", f"{DEPS}/", image_env["LD_LIBRARY_PATH"]
        ),
    }
    pod = _pod(docs, triton_box, "triton", container, spec, {}, standing_in, ports, work)
    by_name = {p["name"]: ports[p["containerPort"]] for p in container["ports"]}
    pod.argv += [  # no network namespace: loopback, and ports of its own
        *(f"--{kind}-address=127.0.0.1" for kind in ("grpc", "http", "metrics")),
        *(f"--{kind}-port={port}" for kind, port in by_name.items()),
    ]
    return pod


@pytest.fixture(scope="module")
def rehearsal(
    postgres_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rehearsal]:
    work = tmp_path_factory.mktemp("pods")
    os.chmod(work, 0o755)  # the pods' users reach their volumes under it
    docs = render(OVERLAY)
    # One build serves the four service images: their build stages are the same.
    builds = set()
    for name in SERVICES:
        steps = instructions(_image(containers(named(docs, "Deployment", name))[0]))
        builds.add(tuple(steps[: len(steps) - len(final_stage(steps))]))
    assert len(builds) == 1, "the service images' build stages differ"
    first = _image(containers(named(docs, "Deployment", "gateway"))[0])
    (work / "image").mkdir()
    box = start_or_fail(
        "the image build", lambda: build_image(image_of(first), first, work / "image")
    )
    r = Rehearsal(docs=docs, s3_endpoint=s3_endpoint)

    # What an operator provides (deploy/k8s/README.md): the S3 secret and bucket; CloudNativePG
    # provides the database secret. A database of its own keeps this test's jobs apart.
    config = named(docs, "ConfigMap", "mixpilot-config")["data"]
    blob = urlsplit(config["MIXPILOT_BLOB_URL"])
    r.bucket = blob.netloc
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=r.bucket)
    database = f"rehearsal_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    secrets = {
        "mixpilot-s3": {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        "mixpilot-db-app": {"uri": postgres_url.rsplit("/", 1)[0] + f"/{database}"},
    }
    broker = start_or_fail("the Kafka broker", lambda: start_tansu(work / "tansu"))
    service_ports = {int(config[setting]): free_port() for setting in PORT_SETTINGS.values()}
    try:
        triton = r.pods["triton"] = _triton_pod(docs, box, work)
        triton.start()
        _wait_ready([triton], time.monotonic())
        renderer_port = service_ports[int(config[PORT_SETTINGS["renderer"]])]
        outside = {
            "MIXPILOT_HOST": "127.0.0.1",  # no network namespace: the pod's address is loopback
            **{s: str(service_ports[int(config[s])]) for s in PORT_SETTINGS.values()},
            "MIXPILOT_KAFKA_BOOTSTRAP": broker.bootstrap,
            "MIXPILOT_TRITON_URL": f"127.0.0.1:{triton.ports[8001]}",
            "MIXPILOT_RENDERER_URL": f"127.0.0.1:{renderer_port}",
            "MIXPILOT_S3_ENDPOINT_URL": s3_endpoint,  # unset in a cluster: AWS itself
        }
        for name in SERVICES:
            spec = named(docs, "Deployment", name)["spec"]["template"]["spec"]
            container = spec["containers"][0]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            r.pods[name] = _pod(
                docs, box, name, container, spec, secrets, outside, service_ports, work
            )
        started = time.monotonic()
        for name in SERVICES:
            r.pods[name].start()
        _wait_ready([r.pods[name] for name in SERVICES], started)
        yield r
    finally:
        for pod in r.pods.values():
            if pod.process is not None:
                stop_process(pod.process)
        broker.stop()


def test_every_pod_starts_within_its_budget_and_passes_its_probes_and_healthcheck(
    rehearsal: Rehearsal,
) -> None:
    for pod in rehearsal.pods.values():
        print(f"{pod.name}: ready {pod.ready_after_s:.1f} s after it started")
        assert _probe(pod, pod.container["livenessProbe"]), pod.name
        assert _probe(pod, pod.container["readinessProbe"]), pod.name
        if pod.name == "triton":
            continue  # its HEALTHCHECK is NVIDIA's ready endpoint, which the probes just asked
        # Docker's HEALTHCHECK runs in the container, as `docker exec` would.
        out = pod.exec(list(image_of(_image(pod.container)).healthcheck), timeout_s=30)
        assert out.returncode == 0, (pod.name, out.stdout, out.stderr)
        # The code it runs is the image's, not the repository's.
        where = pod.exec(["python", "-c", "import services; print(services.__file__)"])
        assert where.stdout.startswith("/opt/venv/lib/"), where


def test_an_operators_key_and_a_job_through_every_stage_with_audio_in_s3(
    rehearsal: Rehearsal,
) -> None:
    gateway = rehearsal.pods["gateway"]
    made = gateway.exec(["mixpilot", "keys", "create", "--tenant", "label-one", "--plan", "label"])
    assert made.returncode == 0, made.stderr
    key = next(w for w in made.stdout.split() if w.startswith("mpk_"))
    auth = {"Authorization": f"Bearer {key}"}
    sr = 44100
    song = little_song(sr=sr, duration_s=8.0)
    resp = httpx.post(
        rehearsal.gateway("/v1/jobs"),
        headers=auth,
        files={"file": ("first song.wav", wav_bytes(song, sr), "audio/wav")},
        timeout=60,
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    seen: dict[str, Any] = {}

    def finished() -> bool:
        seen.update(httpx.get(rehearsal.gateway(f"/v1/jobs/{job_id}"), headers=auth).json())
        return seen["state"] in ("done", "failed")

    logs = "\n".join(f"--- {p.name}\n{log_tail(p.log, 20)}" for p in rehearsal.pods.values())
    wait_until(finished, timeout_s=240, interval_s=0.5, what=f"the job\n{logs}")
    assert seen["state"] == "done", seen
    report = httpx.get(rehearsal.gateway(f"/v1/jobs/{job_id}/report"), headers=auth).json()
    assert set(report["versions"]) >= {"original", "strategy", *AI_VERSIONS.values()}
    audio_resp = httpx.get(
        rehearsal.gateway(f"/v1/jobs/{job_id}/outputs/strategy"), headers=auth, timeout=30
    )
    audio, out_sr = sf.read(io.BytesIO(audio_resp.content), always_2d=True)
    assert out_sr == sr and audio.shape[0] == song.shape[1]
    assert abs(integrated_loudness(audio.T, sr) - (-14.0)) <= 0.5
    assert true_peak_dbtp(audio.T) <= -1.0 + 1e-3
    # The audio went where the ConfigMap says: the S3 bucket, under its prefix.
    prefix = urlsplit(gateway.env["MIXPILOT_BLOB_URL"]).path.strip("/")
    listed = boto3.client("s3", endpoint_url=rehearsal.s3_endpoint).list_objects_v2(
        Bucket=rehearsal.bucket, Prefix=prefix + "/"
    )
    assert listed.get("KeyCount", 0) >= 1 + len(report["versions"])


def test_the_web_ui_and_every_metrics_endpoint_are_served(rehearsal: Rehearsal) -> None:
    page = httpx.get(rehearsal.gateway("/"))
    assert page.status_code == 200 and "app.js" in page.text
    assert httpx.get(rehearsal.gateway("/ui/app.js")).status_code == 200
    for name in STAGES:
        pod = rehearsal.pods[name]
        port = next(p["containerPort"] for p in pod.container["ports"] if p["name"] == "metrics")
        text = httpx.get(f"http://127.0.0.1:{pod.ports[port]}/metrics").text
        assert f"mixpilot_{name}_in_flight_jobs" in text


def test_nothing_tried_to_write_outside_a_volume(rehearsal: Rehearsal) -> None:
    """A read-only root fails loudly or in a swallowed warning; neither may appear."""
    for pod in rehearsal.pods.values():
        log = pod.log.read_text(errors="replace")
        assert "Read-only file system" not in log, (pod.name, log[-3000:])
        assert "Permission denied" not in log, (pod.name, log[-3000:])


def test_the_rollout_check_runs_in_the_predictor_pod_against_the_triton_pod(
    rehearsal: Rehearsal,
) -> None:
    """deploy/k8s/README.md's rollout check: a song copied into the predictor pod's /tmp
    (`kubectl cp`), then `mixpilot triton-check triton:8001 --song /tmp/check.flac` there."""
    predictor, triton = rehearsal.pods["predictor"], rehearsal.pods["triton"]
    (tmp,) = [v.host for v in predictor.volumes if v.path == "/tmp"]
    sr = 44100
    sf.write(tmp / "check.flac", little_song(sr=sr, duration_s=20.0).T, sr)
    out = predictor.exec(
        [
            "mixpilot",
            "triton-check",
            f"127.0.0.1:{triton.ports[8001]}",
            "--song",
            "/tmp/check.flac",
        ],
        timeout_s=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "agree" in out.stdout and "DISAGREE" not in out.stdout
    print(out.stdout)
