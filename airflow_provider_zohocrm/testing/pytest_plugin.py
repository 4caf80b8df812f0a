"""pytest plugin (``pytest11`` entry point): a started, seeded emulator per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .backend import EmulatorBackend
from .seed import seed_demo_org
from .server import ZohoCRMEmulator


@pytest.fixture
def zohocrm_emulator() -> Iterator[ZohoCRMEmulator]:
    """A fresh emulator (default client, small seeded org) so each test starts from known state."""
    backend = EmulatorBackend()
    seed_demo_org(backend, n_bounced=60, seed=42)
    with ZohoCRMEmulator(backend) as emulator:
        yield emulator


@pytest.fixture
def zohocrm_connection_env(
    zohocrm_emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch
) -> ZohoCRMEmulator:
    """The emulator with ``AIRFLOW_CONN_ZOHOCRM_DEFAULT`` exported, for DAG tests that read connections."""
    name, value = zohocrm_emulator.connection_env()
    monkeypatch.setenv(name, value)
    return zohocrm_emulator
