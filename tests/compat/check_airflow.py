"""Compatibility checks of the *installed* provider wheel against the Airflow in the running venv.

Run by ``.ci/compat-3.0.sh`` with the Airflow 3.0 venv's python, from a directory outside the source tree so
``import airflow_provider_zohocrm`` resolves to the installed wheel, never to /work/main. Not collected by
pytest (no ``test_`` prefix); plain python so the venv needs nothing beyond the provider's own dependencies.

    python tests/compat/check_airflow.py --dag-file dags/zoho_unblock_bounced_emails.py --workdir /tmp/x

Each step prints ``ok``/``FAIL`` with its duration; the exit code is the number of failed steps (0 = all ok).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import shlex
import shutil
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

DAG_ID = "zoho_unblock_bounced_emails"
#: "Bounced leads" custom view of the emulator's demo org (airflow_provider_zohocrm.testing.seed).
BOUNCED_VIEW_ID = "6000000031001"
N_BOUNCED = 600
DATA_CENTERS = ["us", "eu", "in", "au", "jp", "cn", "ca", "sa", "uk"]


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.monotonic()
        try:
            result = fn()
        except Exception:
            print(f"FAIL {name} ({time.monotonic() - start:.1f}s)\n{traceback.format_exc()}", flush=True)
            self.failed.append(name)
            return None
        print(f"ok   {name} ({time.monotonic() - start:.1f}s)", flush=True)
        return result


def airflow_command() -> list[str]:
    """The venv's ``airflow`` CLI, through the installed wheel's launcher (``testing.airflow_cli.AIRFLOW_COMMAND``:
    Airflow's own entry point with the garbage collector tuned for short processes, about 40 % less CPU a command).
    Imported here, not at the top: the first check proves where the package is imported from."""
    from airflow_provider_zohocrm.testing.airflow_cli import AIRFLOW, AIRFLOW_COMMAND

    assert Path(AIRFLOW) == Path(sys.executable).with_name("airflow"), AIRFLOW
    return list(AIRFLOW_COMMAND)


def airflow(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the venv's ``airflow`` CLI; raise with its output when it fails."""
    proc = subprocess.run(
        [*airflow_command(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"airflow {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
            f"\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def json_from_cli(text: str) -> Any:
    """The JSON document in a CLI's stdout (Airflow may print log lines before it)."""
    for i, ch in enumerate(text):
        if ch in "[{":
            try:
                return json.loads(text[i:])
            except ValueError:
                continue
    raise AssertionError(f"no JSON in output:\n{text[-2000:]}")


# -- steps ------------------------------------------------------------------------------------------------


def check_installed_from_wheel(source_root: Path | None) -> str:
    import airflow

    import airflow_provider_zohocrm

    location = Path(airflow_provider_zohocrm.__file__).resolve()
    assert "site-packages" in location.parts, (
        f"provider imported from {location}, not from the installed wheel"
    )
    if source_root is not None:
        assert source_root.resolve() not in location.parents, (
            f"provider imported from the source tree {location}"
        )
    print(
        f"     airflow {airflow.__version__}, provider {airflow_provider_zohocrm.__version__}"
        f" at {location.parent}"
    )
    return str(airflow.__version__)


def check_import_every_module() -> None:
    import airflow_provider_zohocrm

    names = [airflow_provider_zohocrm.__name__] + [
        m.name for m in pkgutil.walk_packages(airflow_provider_zohocrm.__path__, "airflow_provider_zohocrm.")
    ]
    errors = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    assert not errors, "modules that do not import:\n" + "\n".join(errors)
    print(f"     {len(names)} modules imported")


def check_providers_list() -> None:
    out = airflow("providers", "list", "-o", "json").stdout
    providers = {p["package_name"]: p for p in json_from_cli(out)}
    assert "airflow-provider-zohocrm" in providers, f"not in `airflow providers list`: {sorted(providers)}"
    hooks = json_from_cli(airflow("providers", "hooks", "-o", "json").stdout)
    assert any(h.get("connection_type") == "zohocrm" for h in hooks), "zohocrm hook not discovered"


def check_legacy_connection_form() -> None:
    """3.0/3.1 build the UI form from the hook's get_connection_form_widgets()/get_ui_field_behaviour()
    (wtforms mocked by the api-server): what the UI will render, as /ui/connections/hook_meta serves it."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    metas = {m.connection_type: m for m in HookMetaService.hook_meta_data()}
    assert "zohocrm" in metas, f"zohocrm not in hook_meta: {sorted(metas)}"
    meta = metas["zohocrm"].model_dump()
    extra = meta["extra_fields"] or {}
    std = meta["standard_fields"] or {}
    assert set(extra) >= {"refresh_token", "data_center", "api_version", "accounts_url", "api_domain"}, extra
    assert extra["refresh_token"]["schema"].get("format") == "password", extra["refresh_token"]
    assert extra["data_center"]["schema"].get("enum") == DATA_CENTERS, extra["data_center"]
    assert extra["data_center"]["value"] == "us", extra["data_center"]
    assert extra["api_version"]["schema"].get("enum"), extra["api_version"]
    assert std["login"]["title"] == "Client ID" and std["password"]["title"] == "Client secret", std
    for field in ("host", "port", "url_schema"):
        assert std[field] and std[field]["hidden"], (field, std)


def prepare_airflow_home(workdir: Path, dag_file: Path) -> None:
    home = workdir / "airflow-home"
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    shutil.copy(dag_file, dags / dag_file.name)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        }
    )
    airflow("db", "migrate")


def check_dag_parses() -> None:
    local = json_from_cli(airflow("dags", "list", "--local", "-o", "json").stdout)
    assert DAG_ID in [d.get("dag_id") for d in local], f"{DAG_ID} not parsed locally: {local}"
    airflow("dags", "reserialize")  # 3.0's `dags list`/`list-import-errors` read the DB, as the UI does
    errors = json_from_cli(airflow("dags", "list-import-errors", "-o", "json").stdout)
    assert not errors, f"import errors: {errors}"
    dags = json_from_cli(airflow("dags", "list", "-o", "json").stdout)
    ids = [d.get("dag_id") for d in dags]
    assert DAG_ID in ids, f"{DAG_ID} not listed: {ids}"


class Emulator:
    """``python -m airflow_provider_zohocrm.testing`` in the background, its connection exported."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow_provider_zohocrm.testing",
                "--port",
                "0",
                "--bounced",
                str(N_BOUNCED),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # blocks until the emulator has bound its port
        # the line is a shell command: export AIRFLOW_CONN_ZOHOCRM_DEFAULT='{…}'
        name, _, value = shlex.split(line)[-1].partition("=")
        assert name == "AIRFLOW_CONN_ZOHOCRM_DEFAULT", f"unexpected emulator output: {line!r}"
        os.environ[name] = value
        self.url = json.loads(value)["extra"]["api_domain"]
        print(f"     emulator at {self.url}")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_emulator/stats", timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def check_hook(emulator: Emulator) -> None:
    from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook

    before = emulator.stats()
    hook = ZohoCRMHook()
    ok, message = hook.test_connection()
    assert ok, f"test_connection failed: {message}"
    print(f"     test_connection: {message}")
    record_id = next(iter(hook.iter_records("Leads", cvid=BOUNCED_VIEW_ID, fields=["id"])))["id"]
    result = hook.unblock_email("Leads", str(record_id), ["Email"])
    print(f"     unblock_email({record_id}): {json.dumps(result)[:200]}")
    after = emulator.stats()
    assert after["requests"]["org"] > before["requests"]["org"], after["requests"]
    assert after["requests"]["unblock_single"] > before["requests"]["unblock_single"], after["requests"]


def check_dag_test(emulator: Emulator) -> None:
    before = emulator.stats()
    proc = airflow("dags", "test", DAG_ID, "-c", json.dumps({"cvid": BOUNCED_VIEW_ID}), timeout=600)
    runs = json_from_cli(airflow("dags", "list-runs", DAG_ID, "-o", "json").stdout)
    states = [r.get("state") for r in runs]
    assert states and all(s == "success" for s in states), f"dag run states {states}\n{proc.stdout[-3000:]}"
    after = emulator.stats()
    bulk = after["requests"]["unblock_bulk"] - before["requests"]["unblock_bulk"]
    sent = after["ids_sent"] - before["ids_sent"]
    # 600 bounced leads (less the one unblocked by check_hook) in batches of 500: at least two bulk calls.
    assert bulk >= 2 and sent >= N_BOUNCED - 1, (
        f"unblock_bulk calls {bulk}, ids sent {sent}: {after['requests']}"
    )
    print(f"     dag run success; {bulk} bulk unblock call(s), {sent} id(s) sent")


def check_require_approval_refused(emulator: Emulator) -> None:
    """Airflow 3.0 has no human-in-the-loop operators: ``require_approval`` fails the run in check_params, with a
    clear message, before any call to Zoho (the emulator's request counts do not move)."""
    before = emulator.stats()
    conf = {"cvid": BOUNCED_VIEW_ID, "require_approval": True}
    proc = subprocess.run(
        [*airflow_command(), "dags", "test", DAG_ID, "-c", json.dumps(conf)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert "require_approval needs Airflow 3.1 or later" in output, output[-4000:]
    runs = json_from_cli(airflow("dags", "list-runs", DAG_ID, "-o", "json").stdout)
    assert "failed" in [r.get("state") for r in runs], f"no failed run: {runs}\n{output[-3000:]}"
    after = emulator.stats()
    assert after["requests"] == before["requests"], (
        f"Zoho was called: {before['requests']} → {after['requests']}"
    )
    print("     require_approval refused in check_params; no Zoho call")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dag-file", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--source-root", type=Path, default=None)
    parser.add_argument("--skip-dag-test", action="store_true")
    args = parser.parse_args()

    checks = Checks()
    checks.run(
        "provider imported from the installed wheel", lambda: check_installed_from_wheel(args.source_root)
    )
    checks.run("import every module of the package", check_import_every_module)
    checks.run(
        "prepare AIRFLOW_HOME (sqlite, db migrate)", lambda: prepare_airflow_home(args.workdir, args.dag_file)
    )
    checks.run("`airflow providers list` shows airflow-provider-zohocrm", check_providers_list)
    checks.run("connection form (hook_meta) from the hook's form methods", check_legacy_connection_form)
    checks.run(f"example DAG parses ({DAG_ID})", check_dag_parses)
    emulator = Emulator()
    try:
        if checks.run("start the emulator", emulator.start) is None and emulator.url:
            checks.run(
                "ZohoCRMHook test_connection + one unblock against the emulator", lambda: check_hook(emulator)
            )
            if not args.skip_dag_test:
                checks.run(
                    f"`airflow dags test {DAG_ID}` against the emulator", lambda: check_dag_test(emulator)
                )
                checks.run(
                    "require_approval refused on Airflow 3.0, before any Zoho call",
                    lambda: check_require_approval_refused(emulator),
                )
    finally:
        emulator.stop()
    print(
        f"{len(checks.failed)} failed: {', '.join(checks.failed)}"
        if checks.failed
        else "all compat checks ok"
    )
    return len(checks.failed)


if __name__ == "__main__":
    raise SystemExit(main())
