"""The Kubernetes manifests and the Dockerfiles, offline: every overlay renders with kubectl's
kustomize; every built-in resource validates against the Kubernetes schema; the custom
resources have what their operators require; and the wiring matches the code (every setting
the services read is provided, every port is the one the code listens on, every topic exists,
every container is probed, every image is a non-root multi-stage build on a pinned base)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml

from services.common.settings import Settings
from services.common.stage_worker import ALL_TOPICS, STAGES
from tests.k8s_manifests import (
    DOCKER,
    K8S,
    ROOT,
    containers,
    env_of,
    final_stage,
    instructions,
    named,
    of,
    render,
)

OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.31"
SERVICES = ("analyzer", "predictor", "renderer", "gateway")
#: Settings no service pod needs from the manifests, and why.
NOT_IN_THE_CLUSTER = {
    "MIXPILOT_SOUNDFONT": "`mixpilot generate` only (training data), not a service",
    "MIXPILOT_S3_ENDPOINT_URL": "unset means AWS S3; set it only for MinIO and the like",
    "MIXPILOT_DATABASE_URL": "the gateway's only, from CloudNativePG's secret (checked below)",
}


def _builtin(doc: dict[str, Any]) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    return group in ("", "apps", "policy", "autoscaling", "batch") or group.endswith(".k8s.io")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_builtin_resource_validates_against_the_schema(overlay: str) -> None:
    docs = render(overlay)
    builtin = [d for d in docs if _builtin(d)]
    assert len(builtin) >= 25
    for doc in builtin:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']}: {exc}") from None
    assert all(
        d["metadata"].get("namespace") == "mixpilot" for d in docs if d["kind"] != "Namespace"
    )


#: The kafka trigger's metadata KEDA documents (a map of strings in its CRD, so the schema
#: cannot catch a misspelt key: KEDA would ignore it and use its default).
KEDA_KAFKA_METADATA = {
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "partitionLimitation",
    "version",
    "sasl",
    "tls",
}


def _not_read(given: Any, read: Any, path: str = "") -> list[str]:
    """Where ``given`` (a manifest) has what the model did not read back: an unknown field, or
    a value it changed."""
    if isinstance(given, dict):
        return [
            problem
            for key, value in given.items()
            for problem in (
                _not_read(value, read[key], f"{path}.{key}")
                if isinstance(read, dict) and key in read
                else [f"{path}.{key}: not a field of the schema"]
            )
        ]
    if isinstance(given, list):
        if not isinstance(read, list) or len(read) != len(given):
            return [f"{path}: a list of {len(given)} read as {read!r}"]
        pairs = enumerate(zip(given, read, strict=True))
        return [p for i, (g, r) in pairs for p in _not_read(g, r, f"{path}[{i}]")]
    return [] if given == read else [f"{path}: {given!r} read as {read!r}"]


def _operator_models() -> dict[str, type]:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject
    from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor

    return {
        "ScaledObject": ScaledObject,
        "ServiceMonitor": ServiceMonitor,
        "PrometheusRule": PrometheusRule,
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_and_prometheus_resources_match_their_operators_schemas(overlay: str) -> None:
    """Read against models generated from KEDA's and prometheus-operator's CRDs: every field
    must be one of the schema's, of its type, and read back unchanged."""
    models = _operator_models()
    checked = 0
    for doc in render(overlay):
        model = models.get(doc["kind"])
        if model is None:
            continue
        assert doc["apiVersion"] in ("keda.sh/v1alpha1", "monitoring.coreos.com/v1"), doc["kind"]
        read = model.model_validate(doc).model_dump(by_alias=True, exclude_unset=True, mode="json")
        assert _not_read(doc, read) == [], f"{doc['kind']}/{doc['metadata']['name']}"
        for trigger in doc["spec"].get("triggers", []):
            assert trigger["type"] == "kafka"
            assert set(trigger["metadata"]) <= KEDA_KAFKA_METADATA, trigger["metadata"]
        checked += 1
    assert checked >= (7 if overlay == "prod" else 4)


def test_the_schema_check_sees_an_unknown_field_and_a_wrong_type() -> None:
    scaled = copy.deepcopy(next(of(render("prod"), "ScaledObject")))
    model = _operator_models()["ScaledObject"]
    scaled["spec"]["maxReplicas"] = 3  # KEDA's is maxReplicaCount
    read = model.model_validate(scaled).model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert _not_read(scaled, read) == [".spec.maxReplicas: not a field of the schema"]
    scaled["spec"]["cooldownPeriod"] = "five minutes"
    with pytest.raises(pydantic.ValidationError):
        model.model_validate(scaled)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_have_what_their_operators_require(overlay: str) -> None:
    docs = render(overlay)
    kafka = named(docs, "Kafka", "mixpilot")
    assert kafka["spec"]["kafka"]["listeners"] and "version" in kafka["spec"]["kafka"]
    pools = list(of(docs, "KafkaNodePool"))
    assert pools and all(p["metadata"]["labels"]["strimzi.io/cluster"] == "mixpilot" for p in pools)
    assert all({"roles", "replicas", "storage"} <= set(p["spec"]) for p in pools)
    brokers = sum(p["spec"]["replicas"] for p in pools)
    for topic in of(docs, "KafkaTopic"):
        spec = topic["spec"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "mixpilot"
        assert spec["partitions"] >= 1 and 1 <= spec["replicas"] <= brokers
        assert int(spec["config"]["min.insync.replicas"]) <= spec["replicas"]
    db = named(docs, "Cluster", "mixpilot-db")
    assert db["spec"]["instances"] >= 1 and db["spec"]["storage"]["size"]
    deployments = {d["metadata"]["name"] for d in of(docs, "Deployment")}
    services = {s["metadata"]["name"]: s for s in of(docs, "Service")}
    for scaled in of(docs, "ScaledObject"):
        assert scaled["spec"]["scaleTargetRef"]["name"] in deployments
        assert scaled["spec"]["triggers"]
    for monitor in of(docs, "ServiceMonitor"):
        wanted = {e["port"] for e in monitor["spec"]["endpoints"]}
        selected = [s for s in services.values() if _selects(monitor["spec"]["selector"], s)]
        assert selected, monitor["metadata"]["name"]
        for service in selected:
            assert wanted <= {p["name"] for p in service["spec"]["ports"]}


def _selects(selector: dict[str, Any], service: dict[str, Any]) -> bool:
    labels = service["metadata"].get("labels", {})
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", []))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_the_services_read_is_provided(overlay: str) -> None:
    docs = render(overlay)
    settings = {f"MIXPILOT_{name.upper()}" for name in Settings.model_fields}
    wanted = settings - set(NOT_IN_THE_CLUSTER)
    for name in SERVICES:
        container = containers(named(docs, "Deployment", name))[0]
        env = env_of(docs, container)
        missing = wanted - set(env)
        assert not missing, (name, sorted(missing))
        # Every value is one the settings accept.
        values = {k[len("MIXPILOT_") :].lower(): v for k, v in env.items() if k in settings}
        values = {k: v for k, v in values.items() if not v.startswith("<from")}
        Settings(**values)  # type: ignore[arg-type]
        secrets = {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
        assert "mixpilot-s3" in secrets  # the blob store's credentials
    gateway = containers(named(docs, "Deployment", "gateway"))[0]
    db = next(e for e in gateway["env"] if e["name"] == "MIXPILOT_DATABASE_URL")
    assert db["valueFrom"]["secretKeyRef"] == {"name": "mixpilot-db-app", "key": "uri"}
    assert named(docs, "Cluster", "mixpilot-db")  # CloudNativePG makes mixpilot-db-app


def _port(container: dict[str, Any], name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_are_the_ones_the_code_listens_on(overlay: str) -> None:
    docs = render(overlay)
    config = named(docs, "ConfigMap", "mixpilot-config")["data"]
    settings = Settings(**{k[len("MIXPILOT_") :].lower(): v for k, v in config.items()})  # type: ignore[arg-type]
    listens = {
        "analyzer": ("grpc", settings.analyzer_port),
        "predictor": ("grpc", settings.predictor_port),
        "renderer": ("grpc", settings.renderer_port),
        "gateway": ("http", settings.gateway_port),
    }
    for name, (port_name, port) in listens.items():
        container = containers(named(docs, "Deployment", name))[0]
        assert _port(container, port_name) == port, name
        if name != "gateway":
            assert _port(container, "metrics") == settings.metrics_port_for(name)  # type: ignore[arg-type]
    # Every Service's target port is a port of the pods it selects.
    deployments = list(of(docs, "Deployment"))
    for service in of(docs, "Service"):
        pods = [
            d
            for d in deployments
            if all(
                d["spec"]["template"]["metadata"]["labels"].get(k) == v
                for k, v in service["spec"]["selector"].items()
            )
        ]
        assert pods, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for pod in pods:
                by_name = {
                    p.get("name"): p["containerPort"] for c in containers(pod) for p in c["ports"]
                }
                assert target in by_name or target in by_name.values(), (
                    service["metadata"]["name"],
                    target,
                )
    # The addresses in the config point at those Services and ports.
    services = {s["metadata"]["name"]: s for s in of(docs, "Service")}
    for address, port_name in (
        (settings.triton_url, "grpc"),
        (settings.renderer_url, "grpc"),
    ):
        host, port = (address or "").rsplit(":", 1)
        assert int(port) == next(
            p["port"] for p in services[host]["spec"]["ports"] if p["name"] == port_name
        )
    kafka = named(docs, "Kafka", "mixpilot")
    assert (
        settings.kafka_bootstrap
        == f"mixpilot-kafka-bootstrap:{kafka['spec']['kafka']['listeners'][0]['port']}"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_exists_and_keda_watches_each_stages_own(overlay: str) -> None:
    docs = render(overlay)
    config = named(docs, "ConfigMap", "mixpilot-config")["data"]
    topics = {t["metadata"]["name"]: t for t in of(docs, "KafkaTopic")}
    assert set(ALL_TOPICS) <= set(topics), sorted(set(ALL_TOPICS) - set(topics))
    for topic in ALL_TOPICS:
        assert topics[topic]["spec"]["partitions"] >= int(
            config["MIXPILOT_TOPIC_PARTITIONS"]
        ) or topic.endswith("dlq")
    prefix = config["MIXPILOT_CONSUMER_GROUP_PREFIX"]
    for scaled in of(docs, "ScaledObject"):
        stage = scaled["spec"]["scaleTargetRef"]["name"]
        trigger = scaled["spec"]["triggers"][0]["metadata"]
        assert trigger["consumerGroup"] == f"{prefix}-{stage}"
        assert trigger["topic"] == STAGES[stage].in_topic
        # More pods than partitions would idle.
        assert scaled["spec"]["maxReplicaCount"] <= topics[trigger["topic"]]["spec"]["partitions"]
    scaled_stages = {s["spec"]["scaleTargetRef"]["name"] for s in of(docs, "ScaledObject")}
    assert scaled_stages == (set(STAGES) if overlay == "prod" else set())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_probed_non_root_and_bounded(overlay: str) -> None:
    docs = render(overlay)
    for deployment in of(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            assert "readinessProbe" in container and "livenessProbe" in container, where
            assert container["resources"]["requests"] and container["resources"]["limits"], where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
        for container in pod.get("initContainers", []):
            assert container["resources"]["limits"], container["name"]


def test_dev_runs_triton_on_cpu_and_prod_on_gpus() -> None:
    dev = named(render("dev"), "Deployment", "triton")["spec"]["template"]["spec"]
    prod = named(render("prod"), "Deployment", "triton")["spec"]["template"]["spec"]
    assert (
        "nvidia.com/gpu" not in str(dev["containers"][0]["resources"]) and "nodeSelector" not in dev
    )
    assert dev["initContainers"][0]["args"][-1] == "cpu"
    assert prod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert prod["initContainers"][0]["args"][-1] == "gpu"
    assert any(t["key"] == "nvidia.com/gpu" for t in prod["tolerations"])
    for name in ("analyzer", "gateway"):
        spread = named(render("prod"), "Deployment", name)["spec"]["template"]["spec"]
        assert {c["topologyKey"] for c in spread["topologySpreadConstraints"]} == {
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
        }
    assert all(d["spec"].get("replicas", 1) == 1 for d in of(render("dev"), "Deployment"))


def test_only_the_gateway_is_reachable_from_outside() -> None:
    docs = render("prod")
    policies = list(of(docs, "NetworkPolicy"))
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")]
    assert deny, "a default deny of ingress"
    from_outside = [
        p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        for p in policies
        for rule in p["spec"].get("ingress", [])
        for peer in rule.get("from", [])
        if peer.get("namespaceSelector", {})
        .get("matchLabels", {})
        .get("kubernetes.io/metadata.name")
        == "ingress-nginx"
    ]
    assert from_outside == ["gateway"]
    ingress = named(docs, "Ingress", "gateway")
    assert (
        ingress["spec"]["tls"]
        and ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
        == "gateway"
    )
    body = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    config = named(docs, "ConfigMap", "mixpilot-config")["data"]
    assert int(body.rstrip("m")) >= float(config["MIXPILOT_MAX_UPLOAD_MB"])
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in of(docs, "Service"))


# -- Dockerfiles -------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_image_is_a_non_root_multi_stage_build_on_a_pinned_base(service: str) -> None:
    steps = instructions(DOCKER / f"{service}.Dockerfile")
    known = {
        "FROM",
        "RUN",
        "COPY",
        "WORKDIR",
        "ENV",
        "USER",
        "EXPOSE",
        "HEALTHCHECK",
        "ENTRYPOINT",
        "CMD",
        "ARG",
        "LABEL",
    }
    assert {word for word, _ in steps} <= known
    bases = [rest.split()[0] for word, rest in steps if word == "FROM"]
    assert len(bases) >= 2, "multi-stage"
    for base in bases:
        assert "@sha256:" in base or re.search(r":\d+\.\d+\.\d+", base), f"unpinned base {base}"
        assert not base.endswith(":latest")
    final = final_stage(steps)
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(
        word == "HEALTHCHECK" and f'healthcheck", "{service}' in rest for word, rest in final
    )
    assert ("CMD", f'["{service}"]') in final
    exposed = {int(p) for word, rest in final if word == "EXPOSE" for p in rest.split()}
    container = containers(named(render("prod"), "Deployment", service))[0]
    assert {p["containerPort"] for p in container["ports"]} == exposed


def _code_metrics() -> set[str]:
    """Every Prometheus metric name the code defines (the stages' per-stage families expanded)."""
    names: set[str] = set()
    for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("gateway/*.py")]:
        text = path.read_text()
        names |= set(re.findall(r'"(mixpilot_[a-z_]+)"', text))
        for family in re.findall(r'f"mixpilot_\{stage\}_([a-z_]+)"', text):
            names |= {f"mixpilot_{stage}_{family}" for stage in STAGES}
    return names | {f"{n}_{s}" for n in names for s in ("bucket", "sum", "count")}


def test_the_dashboard_and_alerts_only_use_metrics_the_code_exports() -> None:
    dashboard = (K8S / "monitoring" / "grafana-dashboard.json").read_text()
    rules = named(render("prod"), "PrometheusRule", "mixpilot")
    queried = set(re.findall(r"mixpilot_[a-z_]+", dashboard + yaml.safe_dump(rules["spec"])))
    queried = {q for q in queried if not q.startswith("mixpilot_(")}
    stage_regex = re.findall(
        r"mixpilot_\((analyzer\|predictor\|renderer)\)_([a-z_]+)",
        dashboard + yaml.safe_dump(rules["spec"]),
    )
    for _, family in stage_regex:
        queried |= {f"mixpilot_{s}_{family}" for s in STAGES}
    known = _code_metrics()
    assert queried and queried <= known, sorted(queried - known)
    assert {p["title"] for p in json.loads(dashboard)["panels"]} >= {
        "Jobs per second, by stage",
        "Consumer lag, by stage (messages waiting)",
        "Stage latency p50 / p95",
        "Triton queue time per request, by model",
        "Failures per second",
    }


def test_the_triton_image_is_nvidias_with_python_311_for_the_models() -> None:
    steps = instructions(DOCKER / "triton.Dockerfile")
    bases = [rest.split()[0] for word, rest in steps if word == "FROM"]
    assert bases and all(b == "nvcr.io/nvidia/tritonserver:24.10-py3" for b in bases)
    final = final_stage(steps)
    assert [rest for word, rest in final if word == "USER"][-1] == "triton-server"
    assert any(word == "HEALTHCHECK" and "/v2/health/ready" in rest for word, rest in final)
    run = " ".join(rest for word, rest in steps if word == "RUN")
    assert "python3.11" in run and "prepare_backends" in run  # the 3.11 Python backend
    entry = next(rest for word, rest in final if word == "ENTRYPOINT")
    assert "--backend-directory=/opt/backends" in entry
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "PATH=/opt/venv/bin:" in env  # how the backend's stub finds mixpilot and torch
    exposed = {int(p) for word, rest in final if word == "EXPOSE" for p in rest.split()}
    triton = containers(named(render("prod"), "Deployment", "triton"))[0]
    assert {p["containerPort"] for p in triton["ports"]} == exposed
    assert triton["image"].endswith("/mixpilot-triton:0.1.0")
