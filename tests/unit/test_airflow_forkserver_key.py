"""Which runs one fork server may serve (``airflow_forkserver.server_key``): only those whose Airflow would have
read the same configuration while importing. The runs themselves: tests/airflow/test_airflow_forkserver.py."""

from __future__ import annotations

import os
from pathlib import Path

from airflow_provider_zohocrm.testing import airflow_forkserver


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": "/usr/bin", **extra}


def test_runs_differing_only_in_what_is_read_when_used_share_a_server(tmp_path: Path) -> None:
    (tmp_path / "airflow.cfg").write_text("[core]\n")
    base = airflow_forkserver.server_key(_env(tmp_path))
    for name, value in (
        ("AIRFLOW_CONN_ZOHOCRM_DEFAULT", '{"conn_type": "zohocrm"}'),
        ("AIRFLOW_VAR_SOMETHING", "1"),
        ("ZOHOCRM_SIMULATION_SCALE", "0.1"),
        ("TMPDIR", str(tmp_path / "elsewhere")),
        ("PYTEST_CURRENT_TEST", "tests/x.py::test (call)"),
    ):
        assert airflow_forkserver.server_key(_env(tmp_path, **{name: value})) == base, name


def test_configuration_read_at_import_gets_its_own_server(tmp_path: Path) -> None:
    cfg = tmp_path / "airflow.cfg"
    cfg.write_text("[core]\n")
    base = airflow_forkserver.server_key(_env(tmp_path))
    assert airflow_forkserver.server_key(_env(tmp_path, AIRFLOW__CORE__PARALLELISM="4")) != base
    assert airflow_forkserver.server_key(_env(tmp_path, PYTHONHASHSEED="1")) != base
    assert airflow_forkserver.server_key(_env(tmp_path / "other")) != base  # another home
    cfg.write_text("[core]\nparallelism = 4\n")  # airflow.cfg changed since the server started
    os.utime(cfg, ns=(1, 1))
    assert airflow_forkserver.server_key(_env(tmp_path)) != base


def test_the_fork_server_can_be_switched_off(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(airflow_forkserver.FORKSERVER_ENV, raising=False)
    assert airflow_forkserver.enabled({})
    assert not airflow_forkserver.enabled({airflow_forkserver.FORKSERVER_ENV: "0"})
    monkeypatch.setenv(airflow_forkserver.FORKSERVER_ENV, "0")
    assert not airflow_forkserver.enabled({})
    assert airflow_forkserver.enabled({airflow_forkserver.FORKSERVER_ENV: "1"})
