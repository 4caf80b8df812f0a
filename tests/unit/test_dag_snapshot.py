"""The built DAG is a public contract: its task ids, dependencies, trigger rules, param names and JSON schemas are
compared with a stored snapshot, and any change fails here. A change on purpose: regenerate the snapshot
(``ZOHOCRM_UPDATE_SNAPSHOT=1``), and add a CHANGELOG line; a removal gets a deprecation warning first
(docs/your-own-dag.md, "Stability")."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _hitl() -> bool:
    from airflow_provider_zohocrm.workflows.group import approval_operator

    return approval_operator() is not None


def describe(dag: Any) -> dict[str, Any]:
    """What the contract covers, as JSON."""
    return {
        "tasks": {
            t.task_id: {
                "upstream": sorted(t.upstream_task_ids),
                "trigger_rule": str(getattr(t.trigger_rule, "value", t.trigger_rule)),
                "mapped": type(t).__name__ == "MappedOperator",
            }
            for t in sorted(dag.tasks, key=lambda t: t.task_id)
        },
        "params": {
            name: {"default": p.value, "schema": p.schema, "description": p.description}
            for name, p in ((n, dag.params.get_param(n)) for n in sorted(dag.params.keys()))
        },
    }


def build(variant: str) -> Any:
    from airflow_provider_zohocrm import unblock_bounced_emails_dag

    approval = "on" if variant == "approval" else "off"
    # as the shipped example builds it (allow_reset_coverage shows in reset_coverage's description)
    return unblock_bounced_emails_dag(
        "zoho_unblock_bounced_emails", approval=approval, max_parallel=10, allow_reset_coverage=True
    )


@pytest.mark.parametrize("variant", ["approval", "no_approval"])
def test_the_built_dag_matches_its_snapshot(variant: str) -> None:
    if variant == "approval" and not _hitl():
        # Airflow 3.0 (the floors run): the approval variant cannot be built, and says why at parse time
        with pytest.raises(ValueError, match=r"approval='on' needs Airflow 3\.1 or later"):
            build(variant)
        return
    got = json.loads(json.dumps(describe(build(variant)), default=str))
    path = SNAPSHOTS / f"unblock_dag_{variant}.json"
    if os.environ.get("ZOHOCRM_UPDATE_SNAPSHOT") == "1":
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    want = json.loads(path.read_text())
    assert got == want, "the built DAG changed: a public contract (see this module's docstring)"


def test_the_shipped_example_is_the_snapshotted_dag() -> None:
    """The example DAG file builds exactly the contract's DAG (Airflow's HITL present: with approval)."""
    from airflow_provider_zohocrm.example_dags.zoho_unblock_bounced_emails import dag

    variant = "approval" if _hitl() else "no_approval"
    got = json.loads(json.dumps(describe(dag), default=str))
    assert got == json.loads((SNAPSHOTS / f"unblock_dag_{variant}.json").read_text())


def test_the_shipped_example_is_short_and_imports_only_public_names() -> None:
    """Issue 25: at most 30 lines, docstring included, and only names of the package's ``__all__`` (a copy of it
    in a DAGs folder survives any refactor of the internals)."""
    import ast

    import airflow_provider_zohocrm
    from airflow_provider_zohocrm.example_dags import EXAMPLE_DAG

    text = EXAMPLE_DAG.read_text()
    assert len(text.splitlines()) <= 30
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow_provider_zohocrm"):
            assert node.module == "airflow_provider_zohocrm", node.module
            assert {a.name for a in node.names} <= set(airflow_provider_zohocrm.__all__)
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("airflow_provider_zohocrm") for a in node.names)
