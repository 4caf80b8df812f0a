"""The one scope string the docs give for a new refresh token (``zoho.scopes.token_scopes``) is enough: a token
holding exactly those scopes passes the preflight for every source kind of the example DAG on Leads and
Contacts (view by name, COQL, whole module; ``verify="emails"``; a tag), and can unblock and tag. The emulator
enforces Zoho's scopes on its own (``testing/``), so it is the oracle, not the scope table under test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, ZohoCRMEmulator, seed_demo_org
from airflow_provider_zohocrm.testing.seed import SeedResult
from airflow_provider_zohocrm.zoho.auth import FileTokenStore
from airflow_provider_zohocrm.zoho.scopes import parse_scopes, token_scopes
from tests.conftest import set_connection

VIEWS = {"Leads": "Bounced leads", "Contacts": "Bounced contacts"}


@pytest.fixture
def org() -> Iterator[tuple[ZohoCRMEmulator, SeedResult]]:
    backend = EmulatorBackend(EmulatorConfig())
    seeded = seed_demo_org(backend, n_bounced=40)
    backend.refresh_token = backend.add_refresh_token(backend.client_id, scopes=parse_scopes(token_scopes()))
    with ZohoCRMEmulator(backend) as em:
        yield em, seeded


@pytest.fixture
def hook(
    org: tuple[ZohoCRMEmulator, SeedResult], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> ZohoCRMHook:
    set_connection(monkeypatch, org[0])
    return ZohoCRMHook(token_store=FileTokenStore(tmp_path / "tokens"))


@pytest.mark.parametrize("module", sorted(VIEWS))
@pytest.mark.parametrize("source", ["view", "coql", "all"])
def test_the_documented_scopes_pass_the_preflight(
    module: str, source: str, hook: ZohoCRMHook, org: tuple[ZohoCRMEmulator, SeedResult]
) -> None:
    kinds = {
        "view": {"view": VIEWS[module]},
        "coql": {"coql_query": f"select id from {module} where Email is not null"},
        "all": {"all_records": True},
    }
    report = hook.preflight(
        module=module, verify="emails", needs_person_tag="Needs a person", sample=2, **kinds[source]
    )
    assert report.ok, report.render()
    assert "?" not in {c.status for c in report.checks}, report.render()  # the token answer lists the scopes
    assert org[0].backend.stats["requests"].get("emails", 0) >= 1


@pytest.mark.parametrize("module", sorted(VIEWS))
def test_the_documented_scopes_unblock_and_tag(
    module: str, hook: ZohoCRMHook, org: tuple[ZohoCRMEmulator, SeedResult]
) -> None:
    em, seeded = org
    blocked = seeded.of("temporary", module)[:2]
    assert blocked
    hook.unblock_emails(module, blocked, ["Email"])
    answers = hook.add_tags(module, blocked, ["Needs a person"])
    assert [len(em.backend.unblock_events(module, rid)) for rid in blocked] == [1] * len(blocked)
    assert [em.backend.record_tags(module, rid) for rid in blocked] == [["Needs a person"]] * len(blocked)
    assert {a["outcome"] for a in answers} == {"tagged"}
