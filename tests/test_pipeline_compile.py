"""The compiled IR: loads with kfp's own loader, holds the six steps, the ParallelFor and the If,
compiles byte-identically, and matches the golden YAML committed beside the pipeline."""
import os

import yaml
from kfp import components

from pipelines.retraining import PipelineImages, PipelineOptions, compile_pipeline

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "pipelines", "genrec_retraining.yaml")
STEPS = {"extract-sequences", "embed-metadata", "train", "diagnose-scaling", "shadow-eval", "promote"}


def _load(path: str) -> tuple[dict, dict]:
    """(pipeline spec, platform spec): kfp-kubernetes settings come as a second YAML document."""
    docs = list(yaml.safe_load_all(open(path)))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def _executors(spec: dict) -> set:
    return {name.removeprefix("exec-").rsplit("-", 1)[0] if name[-1].isdigit() else name.removeprefix("exec-")
            for name in spec["deploymentSpec"]["executors"]}


def test_compiles_deterministically_and_loads_with_kfp(tmp_path):
    a, b = compile_pipeline(str(tmp_path / "a.yaml")), compile_pipeline(str(tmp_path / "b.yaml"))
    assert open(a, "rb").read() == open(b, "rb").read()
    loaded = components.load_component_from_file(a)
    assert loaded.name == "genrec-retraining"
    spec, _ = _load(a)
    assert STEPS <= _executors(spec)


def test_ir_holds_parallel_for_and_if(tmp_path):
    spec, platform = _load(compile_pipeline(str(tmp_path / "p.yaml")))
    tasks = spec["root"]["dag"]["tasks"]
    loops = [t for t in tasks.values() if "iteratorPolicy" in t or "parameterIterator" in t]
    assert loops and loops[0]["iteratorPolicy"]["parallelismLimit"] == PipelineOptions().sweep_parallelism
    conditions = [t for t in tasks.values() if "triggerPolicy" in t and "condition" in t["triggerPolicy"]]
    assert len(conditions) == 1 and "shadow-eval-Output" in conditions[0]["triggerPolicy"]["condition"]
    assert "promote" in str(spec["components"][conditions[0]["componentRef"]["name"]])
    assert "activeDeadlineSeconds" in str(platform), "training steps carry a timeout"


def test_images_are_one_pipeline_level_setting(tmp_path):
    images = PipelineImages(cpu="registry.example/cpu:1", trainer="registry.example/gpu:1")
    spec, _ = _load(compile_pipeline(str(tmp_path / "p.yaml"), PipelineOptions(images=images)))
    used = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert used == {"registry.example/cpu:1", "registry.example/gpu:1"}


def test_matches_golden_yaml(tmp_path):
    """Regenerate with `make golden` after a deliberate change to a component or the DAG."""
    fresh = open(compile_pipeline(str(tmp_path / "p.yaml"))).read()
    assert fresh == open(GOLDEN).read(), "compiled IR differs from pipelines/genrec_retraining.yaml: run `make golden`"
