"""Submit and schedule the compiled retraining pipeline on Kubeflow Pipelines or Vertex AI Pipelines.

Why a module of its own: the compiled YAML is the only thing that travels; this module turns it into a
run or a recurring run and checks what can be checked before anything is sent (the file is a pipeline,
the parameters exist, the cron expression has the right shape for the backend). Credentials come from
the environment only (kfp's own variables, GENREC_KFP_TOKEN / GENREC_KFP_COOKIES, Application Default
Credentials for Vertex), never from arguments, so they never end up in shell history or in the IR.

Scheduled runs always switch caching off: a weekly retraining must not be served last week's cached
extraction or training. Recurring runs cannot be updated in place, so `schedule_*` replaces: it creates
the new schedule first, then deletes the older ones of the same name (a failed create leaves the old
schedule running rather than none).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple

import yaml

from genrec.errors import ConfigError, GenrecError, InputError
from pipelines.cron import kubeflow_cron, vertex_cron

TOKEN_ENV = "GENREC_KFP_TOKEN"  # bearer token for the KFP API (e.g. from `gcloud auth print-identity-token`)
COOKIES_ENV = "GENREC_KFP_COOKIES"  # session cookie for Kubeflow behind Dex/oauth2-proxy
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # kfp's projected service-account token inside a cluster
ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"  # kfp's own variable for the API host


class DeployError(GenrecError):
    """The pipeline service refused or could not be reached (the message names host and request)."""


@dataclass(frozen=True)
class SubmittedRun:
    """One pipeline run accepted by a backend."""

    backend: str  # "kubeflow" or "vertex"
    run_id: str  # KFP run id, or the Vertex PipelineJob resource name
    name: str  # display name
    url: str  # where a person looks at it


@dataclass(frozen=True)
class ScheduledRun:
    """A recurring run accepted by a backend, and the older schedules of the same name it replaced."""

    backend: str
    schedule_id: str  # KFP recurring run id, or the Vertex schedule resource name
    name: str
    cron: str  # the expression as sent to the backend
    replaced: Tuple[str, ...]


# ------------------------------------------------------------------------------ package and params


@dataclass(frozen=True)
class PipelineParameter:
    """One run parameter declared by the compiled pipeline."""

    name: str
    type: str  # STRING, NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN, LIST, STRUCT
    optional: bool


def read_package(package_path: str) -> dict:
    """The pipeline spec (first YAML document) of a compiled package; the platform spec that
    kfp-kubernetes appends as a second document is ignored here."""
    if not os.path.isfile(package_path):
        raise InputError(f"{package_path}: no such pipeline package (run `genrec compile` first)")
    try:
        with open(package_path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as exc:
        raise InputError(f"{package_path}: not a YAML pipeline package ({str(exc).splitlines()[0]})") from exc
    spec = docs[0] if docs else None
    if not isinstance(spec, dict) or "pipelineInfo" not in spec or "root" not in spec:
        raise InputError(f"{package_path}: not a compiled KFP pipeline (no pipelineInfo/root)")
    return spec


def pipeline_parameters(package_path: str) -> Tuple[PipelineParameter, ...]:
    """The run parameters the compiled pipeline declares, in file order."""
    spec = read_package(package_path)
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {}) or {}
    return tuple(
        PipelineParameter(name, str(p.get("parameterType", "")), bool(p.get("isOptional", False)))
        for name, p in declared.items()
    )


def _coerce(value: Any, declared: PipelineParameter, package_path: str) -> Any:
    """A value of the declared type: CLI values arrive JSON-parsed (`--param primary_task=123` is an
    int), so a STRING parameter takes them back as text and a double takes an int."""
    kind = declared.type
    if kind == "STRING":
        return value if isinstance(value, str) else json.dumps(value)
    if kind == "NUMBER_DOUBLE" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    expected = {"NUMBER_INTEGER": int, "BOOLEAN": bool, "LIST": list, "STRUCT": dict}.get(kind)
    if expected is None or (isinstance(value, expected) and not (expected is int and isinstance(value, bool))):
        return value
    raise ConfigError(f"{package_path}: pipeline parameter {declared.name} expects {kind}, got {value!r}")


def check_params(package_path: str, params: Mapping[str, Any]) -> dict:
    """`params` as a plain dict of the declared types, after checking every name is declared and every
    required one given: a typo must fail here, not three hours into a run."""
    declared = {p.name: p for p in pipeline_parameters(package_path)}
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ConfigError(f"{package_path}: unknown pipeline parameter(s) {', '.join(unknown)} "
                          f"(declared: {', '.join(declared)})")
    missing = sorted(n for n, p in declared.items() if not p.optional and n not in params)
    if missing:
        raise ConfigError(f"{package_path}: required pipeline parameter(s) {', '.join(missing)} not given")
    return {name: _coerce(value, declared[name], package_path) for name, value in params.items()}


# ---------------------------------------------------------------------------------------- Kubeflow


def kubeflow_host(host: Optional[str]) -> str:
    """`host`, else $KF_PIPELINES_ENDPOINT, without a trailing slash."""
    host = (host or os.environ.get(ENDPOINT_ENV) or "").rstrip("/")
    if not host:
        raise ConfigError(f"no Kubeflow Pipelines host: pass --host or set ${ENDPOINT_ENV}")
    return host


def kubeflow_client(host: Optional[str], namespace: Optional[str] = None):
    """A kfp.Client for `host` (or $KF_PIPELINES_ENDPOINT) with credentials taken from the
    environment: $GENREC_KFP_TOKEN (bearer), $GENREC_KFP_COOKIES, $KF_PIPELINES_SA_TOKEN_PATH (in a
    cluster), or kfp's own IAP/OAuth variables."""
    import kfp

    host = kubeflow_host(host)
    kwargs: dict = {"host": host}
    if namespace:
        kwargs["namespace"] = namespace
    if os.environ.get(TOKEN_ENV):
        kwargs["existing_token"] = os.environ[TOKEN_ENV]
    elif os.environ.get(SA_TOKEN_PATH_ENV):
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials()
    if os.environ.get(COOKIES_ENV):
        kwargs["cookies"] = os.environ[COOKIES_ENV]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
            return kfp.Client(**kwargs)
    except Exception as exc:  # kfp raises TimeoutError/ApiException/urllib3 errors from its health check
        raise DeployError(f"cannot reach Kubeflow Pipelines at {host}: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _kfp_call(host: str, what: str, call, *args, **kwargs):
    """Run one kfp client call; turn API and connection failures into one-line DeployErrors."""
    import urllib3
    from kfp_server_api import ApiException

    try:
        with contextlib.redirect_stdout(sys.stderr):  # kfp prints links; keep the CLI's stdout for results
            return call(*args, **kwargs)
    except ApiException as exc:
        detail = f"HTTP {exc.status} {exc.reason}" if exc.status else first_line(exc)
        body = (exc.body or "").strip() if isinstance(exc.body, str) else ""
        if body:
            try:
                body = json.loads(body).get("message", body) or body
            except (ValueError, AttributeError):
                pass
            detail += f": {str(body).splitlines()[0][:200]}"
        raise DeployError(f"Kubeflow Pipelines at {host} refused to {what} ({detail})") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise DeployError(f"cannot reach Kubeflow Pipelines at {host} to {what}: {first_line(exc)}") from exc


def _experiment_id(client, host: str, experiment: str, namespace: Optional[str]) -> str:
    exp = _kfp_call(host, f"get or create experiment '{experiment}'", client.create_experiment,
                    name=experiment, namespace=namespace)
    return exp.experiment_id


def submit_kubeflow(
    package_path: str,
    host: Optional[str],
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    namespace: Optional[str] = None,
    enable_caching: Optional[bool] = None,
    pipeline_root: Optional[str] = None,
    service_account: Optional[str] = None,
) -> SubmittedRun:
    """Start one run of the compiled pipeline in `experiment` (created when missing).

    enable_caching None keeps each task's compiled setting; True/False overrides every task.
    """
    params = check_params(package_path, params)
    host = kubeflow_host(host)
    client = kubeflow_client(host, namespace)
    experiment_id = _experiment_id(client, host, experiment, namespace)
    run = _kfp_call(host, f"create run '{run_name}'", client.run_pipeline,
                    experiment_id=experiment_id, job_name=run_name, pipeline_package_path=package_path,
                    params=params, pipeline_root=pipeline_root, enable_caching=enable_caching,
                    service_account=service_account)
    return SubmittedRun("kubeflow", run.run_id, run_name, f"{host}/#/runs/details/{run.run_id}")


def _recurring_runs_named(client, host: str, experiment_id: str, name: str) -> list:
    """Ids of every recurring run called `name` in the experiment (all pages)."""
    flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    found, token = [], ""
    while True:
        page = _kfp_call(host, "list recurring runs", client.list_recurring_runs,
                         experiment_id=experiment_id, page_token=token, page_size=100, filter=flt)
        # the server applies the filter; the name check keeps us safe on servers that ignore it
        found += [r.recurring_run_id for r in (page.recurring_runs or []) if r.display_name == name]
        token = page.next_page_token or ""
        if not token:
            return found


def schedule_kubeflow(
    package_path: str,
    host: Optional[str],
    experiment: str,
    job_name: str,
    cron: str,
    params: Mapping[str, Any],
    namespace: Optional[str] = None,
    pipeline_root: Optional[str] = None,
    service_account: Optional[str] = None,
    description: str = "genrec weekly retraining",
    max_concurrency: int = 1,
) -> ScheduledRun:
    """Create (or replace) the recurring run `job_name`: caching off, one run at a time, no
    catch-up of missed slots (one fresh retraining beats a backlog of stale ones)."""
    cron6 = kubeflow_cron(cron)
    params = check_params(package_path, params)
    host = kubeflow_host(host)
    client = kubeflow_client(host, namespace)
    experiment_id = _experiment_id(client, host, experiment, namespace)
    older = _recurring_runs_named(client, host, experiment_id, job_name)
    created = _kfp_call(host, f"create recurring run '{job_name}'", client.create_recurring_run,
                        experiment_id=experiment_id, job_name=job_name, description=description,
                        cron_expression=cron6, max_concurrency=max_concurrency, no_catchup=True,
                        params=params, pipeline_package_path=package_path, enabled=True,
                        pipeline_root=pipeline_root, enable_caching=False, service_account=service_account)
    for old_id in older:
        _kfp_call(host, f"delete the replaced recurring run {old_id} (the new one is {created.recurring_run_id})",
                  client.delete_recurring_run, recurring_run_id=old_id)
    return ScheduledRun("kubeflow", created.recurring_run_id, job_name, cron6, tuple(older))


# ------------------------------------------------------------------------------------------ Vertex


def _vertex_init(project: str, location: str, api_endpoint: Optional[str], credentials) -> None:
    """Point the aiplatform SDK at the project/location. A custom `api_endpoint` (a private endpoint,
    or a loopback server in tests) goes over REST, which accepts an explicit http(s) scheme."""
    from google.cloud import aiplatform

    if not project or not location:
        raise ConfigError("Vertex AI needs both a project and a location (e.g. us-central1)")
    kwargs: dict = {"project": project, "location": location, "credentials": credentials}
    if api_endpoint:
        kwargs.update(api_endpoint=api_endpoint, api_transport="rest")
    aiplatform.init(**kwargs)


def _vertex_call(what: str, call, *args, **kwargs):
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    try:
        return call(*args, **kwargs)
    except auth_exceptions.DefaultCredentialsError as exc:
        raise DeployError(f"no Google credentials to {what}: run `gcloud auth application-default login` "
                          "or set GOOGLE_APPLICATION_CREDENTIALS") from exc
    except api_exceptions.GoogleAPIError as exc:
        raise DeployError(f"Vertex AI refused to {what}: {first_line(exc)}") from exc


def _vertex_job(package_path, project, location, pipeline_root, display_name, params, enable_caching,
                labels, credentials):
    from google.cloud import aiplatform

    if not pipeline_root or not pipeline_root.startswith("gs://"):
        raise ConfigError(f"Vertex pipeline root must be a gs:// URI, got '{pipeline_root}'")
    return _vertex_call(
        f"prepare pipeline job '{display_name}'", aiplatform.PipelineJob,
        display_name=display_name, template_path=package_path, pipeline_root=pipeline_root,
        parameter_values=params, enable_caching=enable_caching, labels=dict(labels or {}) or None,
        project=project, location=location, credentials=credentials,
    )


def submit_vertex(
    package_path: str,
    project: str,
    location: str,
    pipeline_root: str,
    display_name: str,
    params: Mapping[str, Any],
    service_account: Optional[str] = None,
    enable_caching: Optional[bool] = None,
    labels: Optional[Mapping[str, str]] = None,
    api_endpoint: Optional[str] = None,
    credentials=None,
) -> SubmittedRun:
    """Start one Vertex AI PipelineJob. Credentials: Application Default Credentials unless a
    `google.auth` credentials object is passed (tests pass AnonymousCredentials)."""
    params = check_params(package_path, params)
    _vertex_init(project, location, api_endpoint, credentials)
    job = _vertex_job(package_path, project, location, pipeline_root, display_name, params, enable_caching,
                      labels, credentials)
    _vertex_call(f"create pipeline job '{display_name}'", job.submit, service_account=service_account)
    name = job.resource_name
    run_id = name.rsplit("/", 1)[-1]
    url = (f"https://console.cloud.google.com/vertex-ai/locations/{location}/pipelines/runs/{run_id}"
           f"?project={project}")
    return SubmittedRun("vertex", name, display_name, url)


def _vertex_schedules_named(project: str, location: str, name: str, credentials) -> list:
    from google.cloud import aiplatform

    found = _vertex_call("list schedules", aiplatform.PipelineJobSchedule.list,
                         filter=f'display_name="{name}"', project=project, location=location,
                         credentials=credentials)
    return [s for s in found if s.display_name == name]


def schedule_vertex(
    package_path: str,
    project: str,
    location: str,
    pipeline_root: str,
    display_name: str,
    cron: str,
    params: Mapping[str, Any],
    service_account: Optional[str] = None,
    labels: Optional[Mapping[str, str]] = None,
    api_endpoint: Optional[str] = None,
    credentials=None,
) -> ScheduledRun:
    """Create (or replace) the Vertex schedule `display_name` (5-field cron, caching off, one run at
    a time); older schedules of the same name are deleted after the new one exists."""
    cron5 = vertex_cron(cron)
    params = check_params(package_path, params)
    _vertex_init(project, location, api_endpoint, credentials)
    older = _vertex_schedules_named(project, location, display_name, credentials)
    job = _vertex_job(package_path, project, location, pipeline_root, display_name, params, False, labels,
                      credentials)
    created = _vertex_call(f"create schedule '{display_name}'", job.create_schedule, cron=cron5,
                           display_name=display_name, service_account=service_account,
                           max_concurrent_run_count=1)
    for old in older:
        _vertex_call(f"delete the replaced schedule {old.resource_name}", old.delete)
    return ScheduledRun("vertex", created.resource_name, display_name, cron5,
                        tuple(o.resource_name for o in older))


def parse_params(pairs: Sequence[str]) -> dict:
    """CLI `--param name=value` pairs into a dict; values are parsed as JSON when they parse
    (numbers, booleans, lists), otherwise kept as strings."""
    params: dict = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param '{pair}': expected NAME=VALUE")
        try:
            params[name.strip()] = json.loads(value)
        except ValueError:
            params[name.strip()] = value
    return params
