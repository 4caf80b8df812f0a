"""``airflow_cli.AIRFLOW_COMMAND`` is the real ``airflow`` CLI: same help, same version, same exit codes and the same
sys.path as the ``airflow`` script, only with the garbage collector tuned for short processes (why: the comment
above ``_LAUNCHER`` in airflow_cli.py). Every Airflow process the suite starts goes through it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from airflow_provider_zohocrm.testing import airflow_cli
from tests.conftest import DAGS

pytestmark = pytest.mark.airflow_run


def _run(command: list[str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = airflow_cli.airflow_env(home, DAGS)
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=120, cwd=home)


def test_the_launcher_behaves_as_the_airflow_script(tmp_path: Path) -> None:
    plain, tuned = [airflow_cli.AIRFLOW], list(airflow_cli.AIRFLOW_COMMAND)
    tuned_out = {}
    for args in (("version",), ("--help",), ("dags", "--help")):
        a, b = _run(plain, tmp_path, *args), _run(tuned, tmp_path, *args)
        assert (b.returncode, b.stdout) == (a.returncode, a.stdout), args
        tuned_out[args] = b.stdout
    assert tuned_out[("--help",)].startswith("Usage: airflow ")
    # an unknown command: argparse's exit code 2 and its message, as from the script
    a, b = _run(plain, tmp_path, "no-such-command"), _run(tuned, tmp_path, "no-such-command")
    assert a.returncode == b.returncode == 2
    assert "invalid choice: 'no-such-command'" in b.stderr


def test_the_launcher_leaves_the_working_directory_off_sys_path(tmp_path: Path) -> None:
    # ``-c`` puts "" (the working directory) first on sys.path; the airflow script does not. A module in the
    # working directory named like one Airflow imports must not shadow it.
    (tmp_path / "pendulum.py").write_text("raise SystemExit('the working directory shadowed pendulum')\n")
    result = _run(list(airflow_cli.AIRFLOW_COMMAND), tmp_path, "version")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == _run([airflow_cli.AIRFLOW], tmp_path, "version").stdout.strip()


def test_benchmarks_can_ask_for_the_plain_script() -> None:
    assert airflow_cli.airflow_command({}) == airflow_cli.AIRFLOW_COMMAND
    assert airflow_cli.airflow_command(airflow_cli.PLAIN_AIRFLOW) == (airflow_cli.AIRFLOW,)
    assert airflow_cli.airflow_command({airflow_cli.PLAIN_AIRFLOW_ENV: "0"}) == airflow_cli.AIRFLOW_COMMAND
    assert os.path.basename(airflow_cli.AIRFLOW) == "airflow"
