"""Add Tags: batching (≤ 500 ids per call, over_write false), per-record classification, call failures that never
hide anything, and the scope hint. Against the emulator over HTTP, through the hook; pure classification alone."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, ZohoCRMEmulator, seed_demo_org
from airflow_provider_zohocrm.zoho.auth import FileTokenStore
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.tags import (
    MAX_IDS_PER_TAG_CALL,
    TAG_OUTCOMES,
    classify_tag_answer,
    tag_calls,
    tag_records,
    validate_tag_names,
)
from tests.conftest import REPO, set_connection


def _hook(monkeypatch: pytest.MonkeyPatch, emulator: ZohoCRMEmulator, tmp_path: Path) -> ZohoCRMHook:
    set_connection(monkeypatch, emulator)
    return ZohoCRMHook(token_store=FileTokenStore(tmp_path / "tokens"))


def _leads(backend: EmulatorBackend, n: int) -> list[str]:
    seeded = seed_demo_org(backend, n_bounced=n)
    return seeded.bounced()[:n]


# -- pure ---------------------------------------------------------------------------------------------------


def test_classification_maps_every_documented_item_to_one_outcome() -> None:
    ids = ["11", "12", "13", "14", "15", "16"]
    body = {
        "data": [
            {
                "code": "SUCCESS",
                "details": {"id": "11", "tags": [{"name": "Bounce: needs a person"}]},
                "message": "tags updated successfully",
                "status": "success",
            },
            {
                "code": "RECORD_LOCKED",
                "details": {"action": "add_tags", "id": "12"},
                "message": "Sorry, you cannot perform this operation as the record is locked.",
                "status": "error",
            },
            {
                "code": "INVALID_DATA",
                "details": {"json_path": "$.ids[2]"},
                "message": "invalid data",
                "status": "error",
            },
            {"code": "LIMIT_EXCEEDED", "details": {"id": "14"}, "message": "limit", "status": "error"},
            {"code": "SOMETHING_NEW", "details": {"id": "15"}, "message": "new", "status": "error"},
        ]
    }
    items = classify_tag_answer(ids, body)
    assert [i["id"] for i in items] == ids
    assert [i["outcome"] for i in items] == [
        "tagged",
        "locked",
        "invalid_record",
        "limit_exceeded",
        "error",
        "error",
    ]
    assert items[0]["tags"] == ["Bounce: needs a person"]
    assert items[5]["code"] == "NO_ANSWER"  # no item for 16: never silently counted as tagged


def test_classification_by_position_when_items_name_no_record() -> None:
    items = classify_tag_answer(
        ["1", "2"],
        {"data": [{"code": "SUCCESS", "status": "success"}, {"code": "RECORD_LOCKED", "status": "error"}]},
    )
    assert [i["outcome"] for i in items] == ["tagged", "locked"]


@pytest.mark.parametrize(
    "names",
    ["", [], [""], ["   "], ["a" * 26], ["one,two"], ["x", "X"], [f"t{i}" for i in range(11)], [3]],
)
def test_bad_tag_names_are_refused_before_any_call(names: Any) -> None:
    with pytest.raises(ZohoValidationError):
        validate_tag_names(names)


def test_tag_calls_formula() -> None:
    assert [tag_calls(n) for n in (0, 1, 500, 501, 1000, 1001)] == [0, 1, 1, 2, 2, 3]


# -- against the emulator -----------------------------------------------------------------------------------


def test_tags_1201_records_in_three_calls_of_at_most_500_and_keeps_existing_tags(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = emulator.backend
    ids = _leads(backend, 1201)
    hook = _hook(monkeypatch, emulator, tmp_path)
    first = hook.add_tags("Leads", ids[:1], ["VIP"])
    assert [i["outcome"] for i in first] == ["tagged"]
    backend.reset_stats()

    report = tag_records(hook.client, "Leads", ids, ["Bounce: needs a person"])

    assert report.calls == 3 == backend.stats["requests"]["add_tags"]
    assert report.counts["tagged"] + report.counts["locked"] == len(ids) == len(report.items)
    assert [i["id"] for i in report.items] == ids
    for rid in report.ids("tagged"):
        assert "Bounce: needs a person" in backend.record_tags("Leads", rid)
    assert backend.record_tags("Leads", ids[0]) == ["VIP", "Bounce: needs a person"]  # over_write false
    assert backend.stats["requests"]["unblock_bulk"] == 0


def test_locked_and_unknown_records_get_their_own_outcome(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = emulator.backend
    ids = _leads(backend, 3)
    backend.set_locked("Leads", ids[1])
    unknown = str(int(max(ids, key=int)) + 10_000)
    items = _hook(monkeypatch, emulator, tmp_path).add_tags("Leads", [*ids, unknown], "Needs a person")
    outcomes = {i["id"]: i["outcome"] for i in items}
    assert outcomes == {ids[0]: "tagged", ids[1]: "locked", ids[2]: "tagged", unknown: "invalid_record"}
    assert backend.record_tags("Leads", ids[1]) == []


def test_a_record_with_ten_tags_is_limit_exceeded_and_others_still_tagged(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = emulator.backend
    ids = _leads(backend, 2)
    hook = _hook(monkeypatch, emulator, tmp_path)
    hook.add_tags("Leads", ids[:1], [f"t{i}" for i in range(10)])
    items = hook.add_tags("Leads", ids, ["Needs a person"])
    assert [i["outcome"] for i in items] == ["limit_exceeded", "tagged"]
    assert "Needs a person" not in backend.record_tags("Leads", ids[0])


def test_a_token_without_the_tag_scope_gives_every_id_an_error_with_the_scope_to_grant(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = EmulatorBackend(EmulatorConfig())
    ids = _leads(backend, 600)
    backend.refresh_token = backend.add_refresh_token(
        backend.client_id, scopes=["ZohoCRM.modules.Leads.READ", "ZohoCRM.send_mail.Leads.CREATE"]
    )
    with ZohoCRMEmulator(backend) as emulator:
        report = tag_records(_hook(monkeypatch, emulator, tmp_path).client, "Leads", ids, "Needs a person")
    assert report.calls == 1 == backend.stats["requests"]["add_tags"]  # the second batch is not sent
    assert len(report.items) == len(ids)
    assert {i["outcome"] for i in report.items} == {"error"}
    assert "ZohoCRM.modules.Leads.ALL" in report.items[0]["message"]
    assert "ZohoCRM.settings.tags.ALL" in report.items[-1]["message"]


def documented_lists(outcomes: Sequence[str], root: Path = REPO) -> list[str]:
    """The paragraphs of README.md and docs/**/*.md that name every outcome as code (`tagged`, ...): where a
    reader looks the outcomes up."""
    pages = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    found = []
    for page in (p for p in pages if p.is_file()):
        for paragraph in re.split(r"\n\s*\n", page.read_text(encoding="utf-8")):
            if set(outcomes) <= set(re.findall(r"`([^`\n]+)`", paragraph)):
                found.append(f"{page.relative_to(root)}: {paragraph[:60]!r}")
    return found


def test_every_outcome_name_is_documented() -> None:
    assert set(TAG_OUTCOMES) == {"tagged", "locked", "invalid_record", "limit_exceeded", "error"}
    assert MAX_IDS_PER_TAG_CALL == 500
    assert documented_lists(TAG_OUTCOMES), "no paragraph of README.md or docs/*.md lists every tag outcome"


def test_the_documentation_check_reads_the_pages(tmp_path: Path) -> None:
    """The check above is not vacuous: one outcome missing from the only list fails it."""
    (tmp_path / "docs").mkdir()
    listed = ", ".join(f"`{o}`" for o in TAG_OUTCOMES)
    (tmp_path / "docs" / "tags.md").write_text(f"# Tags\n\nEach record gets one of {listed}.\n")
    assert documented_lists(TAG_OUTCOMES, tmp_path)
    (tmp_path / "docs" / "tags.md").write_text(
        f"# Tags\n\nEach record gets one of {listed.replace('`locked`', 'locked')}.\n"
    )
    assert not documented_lists(TAG_OUTCOMES, tmp_path)
