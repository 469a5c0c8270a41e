"""pipelines.deploy: cron conversion, parameter checks, and the exact requests `submit` / `schedule`
send. The pipeline services are stood in for by a recording HTTP server on loopback that speaks just
enough of the KFP v2beta1 REST API (and of the Vertex AI v1 REST API) for the real clients
(kfp.Client, google-cloud-aiplatform over REST) to accept its answers."""

import json
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List, Optional
from urllib.parse import parse_qs, urlsplit

import pytest
from kfp import compiler, dsl

from genrec.errors import ConfigError, InputError
from pipelines import cron, deploy, pytorchjob

# ------------------------------------------------------------------ a tiny pipeline of our own


@dsl.component(base_image="python:3.11-slim")
def _echo(text: str, times: int) -> str:
    return text * times


@dsl.pipeline(name="tiny-deploy")
def _tiny_pipeline(text: str, times: int = 2):
    _echo(text=text, times=times)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("pkg") / "tiny.yaml")
    compiler.Compiler().compile(_tiny_pipeline, package_path=path)
    return path


# ------------------------------------------------------------------ recording stand-in server


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: dict
    body: Optional[dict]
    headers: dict


@dataclass
class RecordingServer:
    """Stand-in for a pipeline service's REST API on 127.0.0.1: records every request and answers
    with `respond(request) -> (status, json)`."""

    respond: Callable[[Request], tuple]
    requests: List[Request] = field(default_factory=list)

    def __post_init__(self):
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                req = Request(self.command, url.path, parse_qs(url.query),
                              json.loads(raw) if raw else None, {k.lower(): v for k, v in self.headers.items()})
                recorder.requests.append(req)
                status, payload = recorder.respond(req)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def calls(self) -> List[str]:
        return [f"{r.method} {r.path}" for r in self.requests]


def _kfp_json(model) -> dict:
    """A kfp_server_api model as the server would send it (the client's own key mapping)."""
    from kfp_server_api import ApiClient

    return ApiClient().sanitize_for_serialization(model)


class FakeKfpState:
    """What the stand-in KFP API knows: experiments by name, recurring runs by id."""

    def __init__(self, experiments=(), recurring=()):
        self.experiments = {name: f"exp-{i}" for i, name in enumerate(experiments)}
        self.recurring = dict(recurring)  # id -> (display_name, experiment_id)
        self.fail_runs = False

    def respond(self, req: Request) -> tuple:
        import kfp_server_api as api

        base = "/apis/v2beta1"
        if req.path == f"{base}/healthz":
            return 200, {"multi_user": False}
        if req.path == f"{base}/experiments" and req.method == "GET":
            wanted = json.loads(req.query["filter"][0])["predicates"][0]["stringValue"]
            found = [api.V2beta1Experiment(experiment_id=i, display_name=n)
                     for n, i in self.experiments.items() if n == wanted]
            return 200, _kfp_json(api.V2beta1ListExperimentsResponse(experiments=found or None))
        if req.path == f"{base}/experiments" and req.method == "POST":
            new_id = f"exp-{len(self.experiments)}"
            self.experiments[req.body["display_name"]] = new_id
            return 200, dict(req.body, experiment_id=new_id)
        if req.path == f"{base}/runs" and req.method == "POST":
            if self.fail_runs:
                return 500, {"error": "boom", "code": 13, "message": "internal: pipeline store unavailable"}
            return 200, dict(req.body, run_id="run-1", state="PENDING")
        if req.path == f"{base}/recurringruns" and req.method == "GET":
            flt = json.loads(req.query["filter"][0])["predicates"][0]["stringValue"]
            exp = req.query.get("experiment_id", [None])[0]
            found = [api.V2beta1RecurringRun(recurring_run_id=i, display_name=n, experiment_id=e)
                     for i, (n, e) in self.recurring.items() if n == flt and e == exp]
            return 200, _kfp_json(api.V2beta1ListRecurringRunsResponse(recurring_runs=found or None))
        if req.path == f"{base}/recurringruns" and req.method == "POST":
            new_id = f"rr-{len(self.recurring) + 1}"
            self.recurring[new_id] = (req.body["display_name"], req.body["experiment_id"])
            return 200, dict(req.body, recurring_run_id=new_id)
        if req.path.startswith(f"{base}/recurringruns/") and req.method == "DELETE":
            self.recurring.pop(req.path.rsplit("/", 1)[-1], None)
            return 200, {}
        return 404, {"message": f"no route {req.method} {req.path}"}


@pytest.fixture
def kfp_api(monkeypatch, tmp_path):
    """The stand-in KFP API; HOME moved so kfp's ~/.config/kfp/context.json is never read or written."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in (deploy.TOKEN_ENV, deploy.COOKIES_ENV, deploy.SA_TOKEN_PATH_ENV, deploy.ENDPOINT_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("kfp.client.client.Client._LOCAL_KFP_CONTEXT", str(tmp_path / "home" / "context.json"))
    state = FakeKfpState(experiments=["genrec"], recurring={"old-1": ("weekly-retraining", "exp-0"),
                                                            "other-9": ("something-else", "exp-0")})
    server = RecordingServer(state.respond)
    server.state = state
    yield server
    server.close()


def _task_caching(pipeline_spec: dict) -> List[bool]:
    return [t.get("cachingOptions", {}).get("enableCache", False) for t in pipeline_spec["root"]["dag"]["tasks"].values()]


# ------------------------------------------------------------------ cron


@pytest.mark.parametrize("given, expected", [
    ("0 3 * * 1", "0 0 3 * * 1"),
    ("0 0 3 * * 1", "0 0 3 * * 1"),
    ("  30   2 * *  MON ", "0 30 2 * * MON"),
    ("@weekly", "0 0 0 * * 0"),
    ("0 0 9 ? * 2-6", "0 0 9 ? * 2-6"),
    ("*/15 * * * *", "0 */15 * * * *"),
])
def test_kubeflow_cron_is_six_fields_seconds_first(given, expected):
    assert cron.kubeflow_cron(given) == expected


@pytest.mark.parametrize("given, expected", [
    ("0 3 * * 1", "0 3 * * 1"),
    ("0 0 3 * * 1", "0 3 * * 1"),
    ("0 0 9 ? * 2-6", "0 9 * * 2-6"),
    ("TZ=Europe/Amsterdam 0 3 * * 1", "TZ=Europe/Amsterdam 0 3 * * 1"),
    ("@daily", "0 0 * * *"),
])
def test_vertex_cron_is_five_fields_minute_first(given, expected):
    assert cron.vertex_cron(given) == expected


@pytest.mark.parametrize("bad, words", [
    ("", "empty"),
    ("0 3 * *", "4 fields"),
    ("0 0 0 3 * * 1", "7 fields"),
    ("0 25 * * 1", "hour value '25'"),
    ("61 3 * * 1", "minute value '61'"),
    ("0 3 * FOO 1", "month value 'FOO'"),
    ("0 3 * * 1/0", "step"),
    ("? 3 * * 1", "'?'"),
    ("@fortnightly", "unknown macro"),
    ("TZ=UTC 0 3 * * 1", "time-zone"),
])
def test_kubeflow_cron_rejects_bad_expressions_in_one_line(bad, words):
    with pytest.raises(ConfigError) as err:
        cron.kubeflow_cron(bad)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_vertex_cron_refuses_seconds():
    with pytest.raises(ConfigError, match="minute resolution"):
        cron.vertex_cron("30 0 3 * * 1")


# ------------------------------------------------------------------ package and parameters


def test_parameters_are_read_from_the_package(package):
    params = {p.name: p for p in deploy.pipeline_parameters(package)}
    assert set(params) == {"text", "times"}
    assert params["times"].optional and not params["text"].optional
    assert params["times"].type == "NUMBER_INTEGER"


def test_unknown_or_missing_parameters_fail_before_any_request(package):
    with pytest.raises(ConfigError, match="unknown pipeline parameter.*texts"):
        deploy.check_params(package, {"texts": "a"})
    with pytest.raises(ConfigError, match="required pipeline parameter.*text"):
        deploy.check_params(package, {"times": 3})
    assert deploy.check_params(package, {"text": "a"}) == {"text": "a"}


def test_parameters_take_their_declared_types(package):
    assert deploy.check_params(package, {"text": 123, "times": 4}) == {"text": "123", "times": 4}
    with pytest.raises(ConfigError, match="times expects NUMBER_INTEGER, got 'four'"):
        deploy.check_params(package, {"text": "a", "times": "four"})
    with pytest.raises(ConfigError, match="NUMBER_INTEGER"):
        deploy.check_params(package, {"text": "a", "times": True})


def test_a_missing_or_foreign_package_names_the_file(tmp_path):
    with pytest.raises(InputError, match="no-such.yaml"):
        deploy.read_package(str(tmp_path / "no-such.yaml"))
    other = tmp_path / "values.yaml"
    other.write_text("a: 1\n")
    with pytest.raises(InputError, match="values.yaml: not a compiled KFP pipeline"):
        deploy.read_package(str(other))


def test_parse_params_reads_json_values_and_keeps_strings():
    assert deploy.parse_params(["a=1", "b=0.5", "c=[1, 2]", "d=gs://x/y", "e=true", "f="]) == {
        "a": 1, "b": 0.5, "c": [1, 2], "d": "gs://x/y", "e": True, "f": ""}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        deploy.parse_params(["novalue"])


# ------------------------------------------------------------------ Kubeflow


def test_submit_kubeflow_creates_the_run_in_an_existing_experiment(kfp_api, package, capsys):
    run = deploy.submit_kubeflow(package, kfp_api.url, "genrec", "nightly-1", {"text": "hi", "times": 3},
                                 enable_caching=False, pipeline_root="gs://bucket/root")
    assert run == deploy.SubmittedRun("kubeflow", "run-1", "nightly-1", f"{kfp_api.url}/#/runs/details/run-1")
    assert kfp_api.calls() == ["GET /apis/v2beta1/healthz", "GET /apis/v2beta1/experiments",
                               "POST /apis/v2beta1/runs"]
    body = kfp_api.requests[-1].body
    assert body["experiment_id"] == "exp-0" and body["display_name"] == "nightly-1"
    assert body["runtime_config"] == {"parameters": {"text": "hi", "times": 3}, "pipeline_root": "gs://bucket/root"}
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "tiny-deploy"
    assert _task_caching(body["pipeline_spec"]) == [False]
    assert capsys.readouterr().out == ""  # kfp's printed links go to stderr: stdout stays the CLI's


def test_submit_kubeflow_creates_a_missing_experiment_in_the_namespace(kfp_api, package):
    deploy.submit_kubeflow(package, kfp_api.url, "new-exp", "r", {"text": "x"}, namespace="team-a")
    assert kfp_api.calls() == ["GET /apis/v2beta1/experiments", "POST /apis/v2beta1/experiments",
                               "POST /apis/v2beta1/runs"]  # a namespace given: no health probe
    assert kfp_api.requests[0].query["namespace"] == ["team-a"]
    assert kfp_api.requests[1].body == {"display_name": "new-exp", "namespace": "team-a"}
    assert kfp_api.requests[2].body["experiment_id"] == "exp-1"
    # caching left alone: the compiled setting (on by default) travels unchanged
    assert _task_caching(kfp_api.requests[2].body["pipeline_spec"]) == [True]


def test_credentials_come_from_the_environment_and_stay_out_of_the_body(kfp_api, package, monkeypatch):
    monkeypatch.setenv(deploy.TOKEN_ENV, "canary-token-4711")
    monkeypatch.setenv(deploy.ENDPOINT_ENV, kfp_api.url)
    deploy.submit_kubeflow(package, None, "genrec", "r", {"text": "x"})
    for req in kfp_api.requests:
        assert req.headers.get("authorization") == "Bearer canary-token-4711"
        assert "canary-token-4711" not in json.dumps(req.body)


def test_schedule_kubeflow_replaces_the_recurring_run_of_the_same_name(kfp_api, package):
    made = deploy.schedule_kubeflow(package, kfp_api.url, "genrec", "weekly-retraining", "0 3 * * 1",
                                    {"text": "weekly"})
    assert made == deploy.ScheduledRun("kubeflow", "rr-3", "weekly-retraining", "0 0 3 * * 1", ("old-1",))
    assert kfp_api.calls() == ["GET /apis/v2beta1/healthz", "GET /apis/v2beta1/experiments",
                               "GET /apis/v2beta1/recurringruns", "POST /apis/v2beta1/recurringruns",
                               "DELETE /apis/v2beta1/recurringruns/old-1"]
    listing = kfp_api.requests[2]
    assert listing.query["experiment_id"] == ["exp-0"]
    assert json.loads(listing.query["filter"][0])["predicates"][0] == {
        "operation": "EQUALS", "key": "display_name", "stringValue": "weekly-retraining"}
    body = kfp_api.requests[3].body
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 1"}}
    assert body["mode"] == "ENABLE" and body["no_catchup"] is True and body["max_concurrency"] == 1
    assert body["runtime_config"]["parameters"] == {"text": "weekly"}
    assert _task_caching(body["pipeline_spec"]) == [False]  # a schedule never serves last week's cache
    assert set(kfp_api.state.recurring) == {"other-9", "rr-3"}


def test_schedule_kubeflow_with_nothing_to_replace_only_creates(kfp_api, package):
    made = deploy.schedule_kubeflow(package, kfp_api.url, "genrec", "fresh", "@weekly", {"text": "x"},
                                    namespace="team-a")
    assert made.replaced == () and made.cron == "0 0 0 * * 0"
    assert [c for c in kfp_api.calls() if c.startswith("DELETE")] == []


def test_bad_cron_or_params_send_nothing(kfp_api, package):
    with pytest.raises(ConfigError):
        deploy.schedule_kubeflow(package, kfp_api.url, "genrec", "w", "0 3 * *", {"text": "x"})
    with pytest.raises(ConfigError):
        deploy.submit_kubeflow(package, kfp_api.url, "genrec", "r", {"txt": "x"})
    assert kfp_api.requests == []


def test_a_refused_run_is_one_line_naming_the_host(kfp_api, package):
    kfp_api.state.fail_runs = True
    with pytest.raises(deploy.DeployError) as err:
        deploy.submit_kubeflow(package, kfp_api.url, "genrec", "r", {"text": "x"}, namespace="team-a")
    message = str(err.value)
    assert kfp_api.url in message and "HTTP 500" in message and "pipeline store unavailable" in message
    assert "\n" not in message


def test_an_unreachable_host_is_one_line(package, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(deploy.DeployError) as err:
        deploy.submit_kubeflow(package, f"http://127.0.0.1:{port}", "genrec", "r", {"text": "x"},
                               namespace="team-a")
    assert f"127.0.0.1:{port}" in str(err.value) and "\n" not in str(err.value)


def test_no_host_anywhere_is_a_config_error(package, monkeypatch):
    monkeypatch.delenv(deploy.ENDPOINT_ENV, raising=False)
    with pytest.raises(ConfigError, match="KF_PIPELINES_ENDPOINT"):
        deploy.submit_kubeflow(package, None, "genrec", "r", {"text": "x"})


# ------------------------------------------------------------------ Vertex AI


class FakeVertexState:
    """Enough of the Vertex AI v1 REST API: pipelineJobs.create, schedules.list/create/delete."""

    PARENT = "projects/proj-1/locations/europe-west4"

    def __init__(self):
        self.schedules = {f"{self.PARENT}/schedules/old-7": "weekly-retraining",
                          f"{self.PARENT}/schedules/keep-8": "another"}

    def respond(self, req: Request) -> tuple:
        if req.path == f"/v1/{self.PARENT}/pipelineJobs" and req.method == "POST":
            return 200, dict(req.body, name=f"{self.PARENT}/pipelineJobs/{req.query['pipelineJobId'][0]}",
                             state="PIPELINE_STATE_PENDING")
        if req.path == f"/v1/{self.PARENT}/schedules" and req.method == "GET":
            wanted = re.search(r'display_name="([^"]*)"', req.query.get("filter", [""])[0]).group(1)
            found = [{"name": n, "displayName": d, "cron": "0 3 * * 1", "state": "ACTIVE"}
                     for n, d in self.schedules.items() if d == wanted]
            return 200, {"schedules": found}
        if req.path == f"/v1/{self.PARENT}/schedules" and req.method == "POST":
            name = f"{self.PARENT}/schedules/new-{len(self.schedules) + 1}"
            self.schedules[name] = req.body["displayName"]
            return 200, dict(req.body, name=name, state="ACTIVE")
        if req.path.startswith(f"/v1/{self.PARENT}/schedules/") and req.method == "DELETE":
            self.schedules.pop(req.path.removeprefix("/v1/"), None)
            return 200, {"name": f"{self.PARENT}/operations/del-1", "done": True,
                         "response": {"@type": "type.googleapis.com/google.protobuf.Empty"}}
        return 404, {"error": {"code": 404, "message": f"no route {req.method} {req.path}"}}


@pytest.fixture
def vertex_api(fake_gcs, monkeypatch):
    """Stand-in Vertex REST API; GCS (where aiplatform checks the pipeline-root bucket) is the real
    fake-gcs-server on loopback."""
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs)
    state = FakeVertexState()
    server = RecordingServer(state.respond)
    server.state = state
    server.credentials = AnonymousCredentials()
    yield server
    server.close()


from tests.gcs import fake_gcs  # noqa: E402,F401  (session fixture: one fake-gcs-server)


def test_submit_vertex_creates_a_pipeline_job(vertex_api, package):
    run = deploy.submit_vertex(package, "proj-1", "europe-west4", "gs://genrec-runs/root", "nightly",
                               {"text": "v"}, service_account="runner@proj-1.iam.gserviceaccount.com",
                               enable_caching=False, labels={"team": "recs"}, api_endpoint=vertex_api.url,
                               credentials=vertex_api.credentials)
    creates = [r for r in vertex_api.requests if r.method == "POST"]
    assert len(creates) == 1 and creates[0].path == f"/v1/{FakeVertexState.PARENT}/pipelineJobs"
    body = creates[0].body
    assert run.backend == "vertex" and run.run_id == f"{FakeVertexState.PARENT}/pipelineJobs/" + \
        creates[0].query["pipelineJobId"][0]
    assert body["displayName"] == "nightly" and body["labels"] == {"team": "recs"}
    assert body["serviceAccount"] == "runner@proj-1.iam.gserviceaccount.com"
    assert body["runtimeConfig"]["gcsOutputDirectory"] == "gs://genrec-runs/root"
    assert body["runtimeConfig"]["parameterValues"] == {"text": "v"}
    assert _task_caching(body["pipelineSpec"]) == [False]
    assert "europe-west4" in run.url and "proj-1" in run.url


def test_schedule_vertex_replaces_the_schedule_of_the_same_name(vertex_api, package):
    made = deploy.schedule_vertex(package, "proj-1", "europe-west4", "gs://genrec-runs/root",
                                  "weekly-retraining", "0 0 3 * * 1", {"text": "w"},
                                  api_endpoint=vertex_api.url, credentials=vertex_api.credentials)
    parent = FakeVertexState.PARENT
    assert made.cron == "0 3 * * 1" and made.replaced == (f"{parent}/schedules/old-7",)
    calls = [c for c in vertex_api.calls()]
    assert calls == [f"GET /v1/{parent}/schedules", f"POST /v1/{parent}/schedules",
                     f"DELETE /v1/{parent}/schedules/old-7"]
    body = vertex_api.requests[1].body
    assert body["displayName"] == "weekly-retraining" and body["cron"] == "0 3 * * 1"
    assert int(body["maxConcurrentRunCount"]) == 1
    job = body["createPipelineJobRequest"]["pipelineJob"]
    assert job["runtimeConfig"]["parameterValues"] == {"text": "w"}
    assert _task_caching(job["pipelineSpec"]) == [False]
    assert set(vertex_api.state.schedules) == {f"{parent}/schedules/keep-8", made.schedule_id}


def test_vertex_needs_a_gcs_pipeline_root(vertex_api, package):
    with pytest.raises(ConfigError, match="gs://"):
        deploy.submit_vertex(package, "proj-1", "europe-west4", "/local/root", "n", {"text": "v"},
                             api_endpoint=vertex_api.url, credentials=vertex_api.credentials)
    assert vertex_api.requests == []


# ------------------------------------------------------------------ the real compiled IR


CREDENTIAL_PATTERNS = re.compile(
    r"(?i)(api[_-]?key|secret|password|passwd|bearer\s|authorization|private_key|-----BEGIN|"
    r"ya29\.|AIza[0-9A-Za-z_\-]{20,}|ghp_[0-9A-Za-z]{20,}|access[_-]?token|token\s*[:=])")


def test_compiled_ir_holds_no_credential_or_local_path(tmp_path, monkeypatch):
    from pipelines.retraining import PipelineImages, compile_pipeline

    monkeypatch.setenv(deploy.TOKEN_ENV, "canary-token-4711")
    images = PipelineImages(cpu="registry.test/genrec/cpu:7", trainer="registry.test/genrec/trainer:7")
    text = open(compile_pipeline(str(tmp_path / "ir.yaml"), images)).read()
    for local in {os.path.expanduser("~"), "/work", "/tmp", str(tmp_path), os.getcwd(), "canary-token-4711"}:
        assert local not in text, f"compiled IR mentions {local}"
    leak = CREDENTIAL_PATTERNS.search(text)
    assert leak is None, f"compiled IR holds something credential-like: {text[leak.start() - 40:leak.end() + 40]!r}"


def test_every_image_in_the_ir_comes_from_pipeline_images(tmp_path):
    import yaml

    from pipelines.retraining import PipelineImages, compile_pipeline

    images = PipelineImages(cpu="registry.test/genrec/cpu:7", trainer="registry.test/genrec/trainer:7")
    spec = next(yaml.safe_load_all(open(compile_pipeline(str(tmp_path / "ir.yaml"), images))))
    used = {name: e["container"]["image"] for name, e in spec["deploymentSpec"]["executors"].items()}
    assert set(used.values()) == {images.cpu, images.trainer}
    assert {n for n, image in used.items() if image == images.trainer} == \
        {n for n in used if n.removeprefix("exec-").split("-")[0] == "train"}


# ------------------------------------------------------------------ PyTorchJob for the training step


def test_pytorchjob_manifest_has_the_shape_of_the_checked_in_template():
    import yaml

    with open(os.path.join(os.path.dirname(__file__), "..", "manifests", "training", "pytorchjob.yaml")) as f:
        template = yaml.safe_load(f)
    made = pytorchjob.pytorchjob_manifest(pytorchjob.PyTorchJobSpec("genrec-train", "registry.test/trainer:1", nodes=4),
                                      ["--data=/data/sequences", "--out=/data/models/candidate", "--config={}"])
    assert (made["apiVersion"], made["kind"]) == (template["apiVersion"], template["kind"])
    assert set(made["spec"]) == set(template["spec"])
    assert made["spec"]["elasticPolicy"] == template["spec"]["elasticPolicy"]
    assert made["spec"]["nprocPerNode"] == template["spec"]["nprocPerNode"]
    for role in ("Master", "Worker"):
        ours, theirs = made["spec"]["pytorchReplicaSpecs"][role], template["spec"]["pytorchReplicaSpecs"][role]
        assert ours["replicas"] == theirs["replicas"]
        (a,), (b,) = ours["template"]["spec"]["containers"], theirs["template"]["spec"]["containers"]
        assert (a["name"], a["command"], a["ports"]) == (b["name"], b["command"], b["ports"])
        assert a["args"][:2] == b["args"][:2] == ["-m", "genrec.training"]
        assert a["resources"]["limits"]["nvidia.com/gpu"] == b["resources"]["limits"]["nvidia.com/gpu"]


def test_a_single_node_job_has_no_workers_and_bad_names_are_refused():
    made = pytorchjob.pytorchjob_manifest(pytorchjob.PyTorchJobSpec("solo", "img:1", nodes=1, gpus_per_node=0), [])
    assert set(made["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    container = made["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    with pytest.raises(ConfigError, match="Kubernetes name"):
        pytorchjob.PyTorchJobSpec("Genrec_Train", "img:1")


class FakeKubeState:
    """Enough of the Kubernetes API for kubeflow.org/v1 pytorchjobs: create, get (status moves through
    the given conditions, one per read), delete."""

    BASE = "/apis/kubeflow.org/v1/namespaces/genrec/pytorchjobs"

    def __init__(self, states, exists=False):
        self.states, self.exists, self.job = list(states), exists, None

    def respond(self, req: Request) -> tuple:
        if req.method == "POST" and req.path == self.BASE:
            if self.exists:
                return 409, {"kind": "Status", "status": "Failure", "reason": "AlreadyExists", "code": 409}
            self.job = req.body
            return 201, req.body
        if req.method == "GET" and req.path == f"{self.BASE}/genrec-train":
            state, message = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            conditions = [{"type": "Created", "status": "True"}] + \
                ([{"type": state, "status": "True", "message": message}] if state else [])
            return 200, dict(self.job, status={"conditions": conditions})
        if req.method == "DELETE" and req.path == f"{self.BASE}/genrec-train":
            return 200, {"kind": "Status", "status": "Success"}
        return 404, {"kind": "Status", "code": 404}


def _kube(states, exists=False):
    from kubernetes import client

    server = RecordingServer(FakeKubeState(states, exists).respond)
    config = client.Configuration()
    config.host = server.url
    return server, client.ApiClient(config)


def _manifest():
    return pytorchjob.pytorchjob_manifest(pytorchjob.PyTorchJobSpec("genrec-train", "img:1", nodes=2), ["--out=/data/m"])


def test_run_pytorchjob_creates_then_waits_for_success():
    server, api = _kube([("Running", ""), ("Running", ""), ("Succeeded", "done")])
    try:
        assert pytorchjob.run_pytorchjob(_manifest(), api_client=api, sleep=lambda s: None) == "Succeeded"
    finally:
        server.close()
    assert server.calls() == [f"POST {FakeKubeState.BASE}"] + [f"GET {FakeKubeState.BASE}/genrec-train"] * 3
    assert server.requests[0].body["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1


def test_a_failed_job_raises_the_operators_message():
    from genrec.errors import TrainingError

    server, api = _kube([("Running", ""), ("Failed", "worker 1 OOMKilled")])
    try:
        with pytest.raises(TrainingError, match="genrec/genrec-train failed: worker 1 OOMKilled"):
            pytorchjob.run_pytorchjob(_manifest(), api_client=api, sleep=lambda s: None)
    finally:
        server.close()


def test_a_job_past_its_deadline_is_deleted():
    from genrec.errors import TrainingError

    server, api = _kube([("Running", "")])
    ticks = iter(range(0, 10_000, 100))
    try:
        with pytest.raises(TrainingError, match="still Running after 250 s; deleted it"):
            pytorchjob.run_pytorchjob(_manifest(), timeout_s=250, api_client=api, sleep=lambda s: None,
                                  clock=lambda: float(next(ticks)))
    finally:
        server.close()
    assert server.calls()[-1] == f"DELETE {FakeKubeState.BASE}/genrec-train"


def test_an_existing_job_of_the_same_name_is_a_deploy_error():
    server, api = _kube([("Running", "")], exists=True)
    try:
        with pytest.raises(deploy.DeployError, match="already exists"):
            pytorchjob.run_pytorchjob(_manifest(), api_client=api, sleep=lambda s: None)
    finally:
        server.close()
