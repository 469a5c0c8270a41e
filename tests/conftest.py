"""Session-wide test set-up."""
import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def scratch_tmpdir(tmp_path_factory):
    """What the tests start (torchrun, Beam's job server, kfp.local steps) keeps its temporary folders
    in this session's pytest folder, which pytest prunes to the last three, instead of leaving
    dozens of torchelastic_* and beam-temp* folders in /tmp every run."""
    scratch = tmp_path_factory.mktemp("scratch")
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(scratch))
    tempfile.tempdir = None  # gettempdir() caches its answer: read TMPDIR again
    yield scratch
    patch.undo()
    tempfile.tempdir = None
