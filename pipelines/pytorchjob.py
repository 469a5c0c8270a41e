"""Multi-node training on the Kubeflow training operator: the PyTorchJob resource for a
genrec.training run (the shape of manifests/training/pytorchjob.yaml) and a create-and-wait client.
torchrun inside each pod gets its rendezvous settings from the operator (PET_* variables)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, Tuple

from genrec.errors import ConfigError
from pipelines.deploy import DeployError, first_line

PYTORCHJOB_GROUP, PYTORCHJOB_VERSION, PYTORCHJOB_PLURAL = "kubeflow.org", "v1", "pytorchjobs"
PYTORCH_CONTAINER, PYTORCH_PORT_NAME = "pytorch", "pytorchjob-port"  # names the training operator looks for


@dataclass(frozen=True)
class PyTorchJobSpec:
    """A multi-node genrec.training run on the Kubeflow training operator (v1 API); the same shape as
    manifests/training/pytorchjob.yaml. `nodes` counts the Master too."""

    name: str
    image: str
    namespace: str = "genrec"
    nodes: int = 2
    nproc_per_node: int = 8
    gpus_per_node: int = 8
    cpu: str = "32"
    memory: str = "256Gi"
    service_account: str = "genrec-pipeline-runner"
    data_claim: str = "genrec-data"  # ReadWriteMany PVC mounted at /data on every node
    max_restarts: int = 3
    port: int = 23456
    node_selector: Tuple[Tuple[str, str], ...] = ()

    def __post_init__(self):
        if self.nodes < 1 or self.nproc_per_node < 1 or self.gpus_per_node < 0:
            raise ConfigError(f"PyTorchJob {self.name}: nodes and nproc_per_node must be >= 1, gpus >= 0")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", self.name):
            raise ConfigError(f"PyTorchJob name '{self.name}' is not a valid Kubernetes name")


def pytorchjob_manifest(spec: PyTorchJobSpec, train_args: Sequence[str]) -> dict:
    """The PyTorchJob resource running `python -m torch.distributed.run -m genrec.training <train_args>`
    on `spec.nodes` nodes: 1 Master (hosting the c10d rendezvous) + nodes-1 Workers. The operator
    supplies torchrun's PET_* settings, so the command holds only the module and its arguments."""
    resources = {"cpu": spec.cpu, "memory": spec.memory}
    limits = dict(resources, **({"nvidia.com/gpu": spec.gpus_per_node} if spec.gpus_per_node else {}))
    container = {
        "name": PYTORCH_CONTAINER,
        "image": spec.image,
        "command": ["python", "-m", "torch.distributed.run"],
        "args": ["-m", "genrec.training", *train_args],
        "ports": [{"name": PYTORCH_PORT_NAME, "containerPort": spec.port}],
        "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}],
        "resources": {"requests": resources, "limits": limits},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "dshm", "mountPath": "/dev/shm"}],
    }
    pod = {
        "serviceAccountName": spec.service_account,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
        "containers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": spec.data_claim}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory"}}],
    }
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.gpus_per_node:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    template = {"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}}, "spec": pod}
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}}
    if spec.nodes > 1:
        replicas["Worker"] = {"replicas": spec.nodes - 1, "restartPolicy": "OnFailure", "template": template}
    return {
        "apiVersion": f"{PYTORCHJOB_GROUP}/{PYTORCHJOB_VERSION}",
        "kind": "PyTorchJob",
        "metadata": {"name": spec.name, "namespace": spec.namespace,
                     "labels": {"app.kubernetes.io/part-of": "genrec"}},
        "spec": {
            "nprocPerNode": str(spec.nproc_per_node),
            "elasticPolicy": {"rdzvBackend": "c10d", "rdzvHost": f"{spec.name}-master-0", "rdzvPort": spec.port,
                              "minReplicas": spec.nodes, "maxReplicas": spec.nodes,
                              "maxRestarts": spec.max_restarts},
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": spec.max_restarts},
            "pytorchReplicaSpecs": replicas,
        },
    }


def _kube_api_client():
    """In a pod: the service account; elsewhere: ~/.kube/config (credentials from the environment)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise DeployError(f"no Kubernetes credentials (not in a pod, no kubeconfig): {first_line(exc)}") from exc
    return client.ApiClient()


def _job_state(job: dict) -> Tuple[str, str]:
    """(latest true condition type, its message) from a PyTorchJob's status."""
    conditions = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    if not conditions:
        return "Pending", ""
    last = conditions[-1]
    return str(last.get("type", "")), str(last.get("message", "") or last.get("reason", ""))


def run_pytorchjob(manifest: dict, timeout_s: float = 48 * 3600, poll_s: float = 30.0, api_client=None,
                   clock=None, sleep=None) -> str:
    """Create the PyTorchJob and wait for Succeeded (returned) or Failed (TrainingError with the
    operator's message). A timeout deletes the job so no GPU nodes stay held."""
    import time

    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from genrec.errors import TrainingError

    clock, sleep = clock or time.monotonic, sleep or time.sleep
    api = client.CustomObjectsApi(api_client or _kube_api_client())
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    where = dict(group=PYTORCHJOB_GROUP, version=PYTORCHJOB_VERSION, namespace=namespace, plural=PYTORCHJOB_PLURAL)
    try:
        api.create_namespaced_custom_object(body=manifest, **where)
    except ApiException as exc:
        if exc.status == 409:
            raise DeployError(f"PyTorchJob {namespace}/{name} already exists: delete it or use another name") from exc
        raise DeployError(f"Kubernetes refused PyTorchJob {namespace}/{name}: HTTP {exc.status} {exc.reason}") from exc
    deadline = clock() + timeout_s
    while True:
        try:
            job = api.get_namespaced_custom_object(name=name, **where)
        except ApiException as exc:
            raise DeployError(f"cannot read PyTorchJob {namespace}/{name}: HTTP {exc.status} {exc.reason}") from exc
        state, message = _job_state(job)
        if state == "Succeeded":
            return state
        if state == "Failed":
            raise TrainingError(f"PyTorchJob {namespace}/{name} failed: {message or 'no message'}")
        if clock() >= deadline:
            api.delete_namespaced_custom_object(name=name, **where)
            raise TrainingError(f"PyTorchJob {namespace}/{name} still {state} after {timeout_s:.0f} s; deleted it")
        sleep(poll_s)
