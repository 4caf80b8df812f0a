"""Preflight: try a real Zoho org before the first night, changing nothing.

``python -m airflow_provider_zohocrm check --conn-id zohocrm_default --module Leads --view "Bounced leads"``, or
:func:`run_preflight` from Python. It obtains a token, compares the scopes Zoho granted (the token response's
``scope``) with what each step of the job needs, reads the org and the data center, resolves the view, counts
its records, and reads the Emails lists of a few of them, warning when the view lists records that never
bounced. It makes no unblock call and no tag call: whatever it cannot prove by reading is marked unverified.

Every step ends in one :class:`Check`: ✓ ok, ✗ fail (with the fix), ! warn, ? unverified, - not needed. A
report with any ✗ is not ``ok`` (the command exits 1).

The connection form's Test button (:meth:`ZohoCRMHook.test_connection`) runs :func:`connection_checks`: the
token, the org, and the scopes — no other call.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_zohocrm.zoho import scopes as need
from airflow_provider_zohocrm.zoho.errors import (
    ZohoConfigError,
    ZohoCRMError,
    ZohoScopeError,
    ZohoValidationError,
)
from airflow_provider_zohocrm.zoho.params import VERIFY_MODES
from airflow_provider_zohocrm.zoho.scopes import ScopeNeed, granted_by, parse_scopes
from airflow_provider_zohocrm.zoho.validation import (
    SUPPORTED_MODULES,
    coql_module,
    validate_coql,
    validate_module,
)

if TYPE_CHECKING:
    from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
    from airflow_provider_zohocrm.zoho.client import ZohoCRMClient

Status = Literal["ok", "fail", "warn", "unverified", "skip"]
SYMBOLS: dict[str, str] = {"ok": "✓", "fail": "✗", "warn": "!", "unverified": "?", "skip": "-"}
#: Records read on the first page of a view or COQL query (one call).
FIRST_PAGE = 200
DEFAULT_SAMPLE = 3
SCOPE_FIX = (
    "Generate a new refresh token whose scopes include {scopes} (README: 'Getting a refresh token') and put it"
    " in the connection's refresh_token."
)


@dataclass
class Check:
    """One line of the checklist; ``fix`` says what to do about a ✗ (or a !)."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def render(self) -> str:
        line = f"{SYMBOLS[self.status]} {self.name}: {self.detail}"
        return line + (f"\n    fix: {self.fix}" if self.fix else "")


@dataclass
class PreflightReport:
    """The checklist, in the order the steps ran, and what was learnt on the way."""

    conn_id: str
    checks: list[Check] = field(default_factory=list)
    granted_scopes: list[str] | None = None  # None: Zoho's token answer listed none
    org: dict[str, Any] = field(default_factory=dict)
    api_domain: str = ""
    view_id: str | None = None
    record_count: int | None = None
    record_count_exact: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def add(self, name: str, status: Status, detail: str, fix: str = "") -> Check:
        item = Check(name, status, detail, fix)
        self.checks.append(item)
        return item

    def render(self) -> str:
        head = f"Zoho CRM preflight for connection {self.conn_id!r} (read-only: no unblock, no tag call)"
        failed = len(self.failures)
        tail = "All checks passed." if not failed else f"{failed} check(s) failed: fix the ✗ lines above."
        return "\n".join([head, *(c.render() for c in self.checks), tail])

    def summary(self) -> str:
        """The Test button's text: the org first (when reached), then the ✗ lines, then the rest."""
        lines = []
        if self.org:
            name = self.org.get("company_name") or self.org.get("id") or "the org"
            lines.append(f"Connected to Zoho CRM org {name!r} at {self.api_domain}.")
        ordered = self.failures + [c for c in self.checks if c.status != "fail"]
        for item in ordered:
            if item.name in ("connection", "access token", "org") and item.status == "ok":
                continue
            text = f"{SYMBOLS[item.status]} {item.name}: {item.detail}"
            lines.append(text + (f" Fix: {item.fix}" if item.fix and item.status == "fail" else ""))
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"ok": self.ok, **asdict(self)}, indent=2, default=str)


def _fix(scope_need: ScopeNeed) -> str:
    return SCOPE_FIX.format(scopes=scope_need.describe())


class _Preflight:
    """The steps, sharing what earlier steps learnt (the token's scopes, the view's first page)."""

    def __init__(self, hook: ZohoCRMHook, report: PreflightReport) -> None:
        self.hook = hook
        self.report = report
        self.scopes: list[str] | None = None

    @property
    def client(self) -> ZohoCRMClient:
        return self.hook.client

    def connection_and_token(self) -> bool:
        """The connection's settings and a token; False when the rest cannot run."""
        report = self.report
        try:
            settings = self.hook.settings
        except ZohoConfigError as exc:
            report.add("connection", "fail", str(exc), "Fix the connection (README: 'The connection').")
            return False
        except Exception as exc:  # e.g. the connection does not exist
            report.add("connection", "fail", f"{type(exc).__name__}: {exc}", "Create the connection first.")
            return False
        endpoints = settings.endpoints
        report.add(
            "connection",
            "ok",
            f"data center {endpoints.data_center.name!r}, accounts server {endpoints.accounts_url},"
            f" API {settings.api_version}",
        )
        try:
            token = self.hook.tokens.get_token()
        except ZohoCRMError as exc:
            report.add("access token", "fail", str(exc), "See the message: Zoho's answer names the cause.")
            return False
        report.api_domain = token.api_domain
        report.add("access token", "ok", f"obtained; API domain {token.api_domain}")
        granted = parse_scopes(token.scope)
        if granted:
            self.scopes = granted
            report.granted_scopes = granted
            report.add("scopes in the token", "ok", " ".join(granted))
        else:
            report.add(
                "scopes in the token",
                "warn",
                "Zoho's token answer lists no scopes (some Zoho docs leave the field out): the read scopes are"
                " probed with cheap read calls; the unblock and tag scopes cannot be proven without changing"
                " data, so they are unverified.",
            )
        return True

    # -- scope-only steps -------------------------------------------------------------------------------------

    def scope_check(self, name: str, scope_need: ScopeNeed, required: bool, unused_because: str) -> Check:
        """A step this preflight does not perform: judged from the granted scopes alone."""
        if self.scopes is None:
            if required:
                return self.report.add(
                    name,
                    "unverified",
                    f"needs {scope_need.describe()}; the preflight never makes this call, and Zoho listed no"
                    " scopes to compare with",
                    f"Make sure the refresh token was generated with {scope_need.describe()}.",
                )
            return self.report.add(name, "skip", f"not needed ({unused_because})")
        scope = granted_by(self.scopes, scope_need)
        if scope:
            return self.report.add(name, "ok", f"granted by {scope}")
        if required:
            return self.report.add(
                name, "fail", f"no granted scope allows it (needs {scope_need.describe()})", _fix(scope_need)
            )
        return self.report.add(
            name, "skip", f"not granted; not needed ({unused_because}; needs {scope_need.describe()})"
        )

    # -- steps that read -----------------------------------------------------------------------------------

    def read_step(
        self, name: str, scope_need: ScopeNeed, required: bool, call: Callable[[], str]
    ) -> str | None:
        """Run a read call and judge the step by Zoho's answer; ``None`` when it failed."""
        try:
            detail = call()
        except ZohoScopeError:
            status: Status = "fail" if required else "warn"
            have = "" if self.scopes is None else " (none of the granted scopes covers it)"
            self.report.add(
                name, status, f"Zoho refused: the token lacks {scope_need.describe()}{have}", _fix(scope_need)
            )
            return None
        except ZohoValidationError as exc:
            self.report.add(name, "fail", str(exc), "Use one of the names or ids listed.")
            return None
        except ZohoCRMError as exc:
            self.report.add(name, "fail" if required else "warn", str(exc))
            return None
        if self.scopes is not None and not granted_by(self.scopes, scope_need):
            detail += f" (Zoho allowed it, though no granted scope names {scope_need.describe()})"
        self.report.add(name, "ok", detail)
        return detail

    def org(self) -> None:
        def call() -> str:
            org = self.hook.get_org()
            self.report.org = org
            settings = self.hook.settings
            license_details = org.get("license_details")
            edition = license_details.get("paid_type") if isinstance(license_details, dict) else None
            parts = [
                f"{org.get('company_name') or 'unnamed org'!r} (id {org.get('id')})",
                f"data center {settings.endpoints.data_center.name!r}",
                f"API domain {self.hook.tokens.get_token().api_domain}",
            ]
            if edition:
                parts.append(f"edition {edition}")
            return ", ".join(parts)

        self.read_step("org", need.org_read(), True, call)


def run_preflight(
    hook: ZohoCRMHook,
    *,
    module: str = "Leads",
    view: str | None = None,
    coql_query: str | None = None,
    all_records: bool = False,
    verify: str | None = None,
    needs_person_tag: str | None = None,
    count: bool = False,
    sample: int = DEFAULT_SAMPLE,
    min_hours_since_bounce: float = 0,
    now: datetime | None = None,
) -> PreflightReport:
    """Check a connection and one source the way the DAG will use them, read-only.

    :param module: the module API name (a ``coql_query`` names its own module in its ``from``).
    :param view: a custom view's name as shown in the CRM, or its id.
    :param coql_query: a COQL select of the candidates (without limit/offset).
    :param all_records: the DAG's ``all: true`` source: every record of the module with an Email (read with
        COQL), verified with ``emails`` unless ``verify`` says otherwise.
    :param verify: the run's verification mode (``none``, ``emails``, ``sweep``): with ``emails`` the Emails
        scope is required; otherwise the sample only warns.
    :param needs_person_tag: the tag the run will set: makes the tag scope required.
    :param count: count every record of the source (⌈N/200⌉ calls) instead of reading one page.
    :param sample: how many of the source's records to check in their Emails lists (0: none).
    :raises ZohoValidationError: on bad input, before any call.
    """
    if sum((view is not None, coql_query is not None, bool(all_records))) > 1:
        raise ZohoValidationError("Give one source: a view, a coql_query, or all_records.")
    if all_records:
        from airflow_provider_zohocrm.zoho.sources import whole_module_query

        coql_query = whole_module_query(validate_module(module), ["Email"], None, None)
        verify = verify or "emails"
    if coql_query is not None:
        coql_query = validate_coql(coql_query)
        module = coql_module(coql_query)
    module = validate_module(module)
    if verify is not None and verify not in VERIFY_MODES:
        raise ZohoValidationError(f"verify must be one of {', '.join(VERIFY_MODES)}, not {verify!r}.")
    if needs_person_tag is not None:
        from airflow_provider_zohocrm.zoho.tags import validate_tag_names

        validate_tag_names([needs_person_tag])
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
        raise ZohoValidationError(f"sample must be a whole number ≥ 0, not {sample!r}.")
    if view is not None and not str(view).strip():
        raise ZohoValidationError("Give the view's name or id, not an empty string.")

    report = PreflightReport(conn_id=hook.zohocrm_conn_id)
    run = _Preflight(hook, report)
    if not run.connection_and_token():
        return report
    run.org()
    first_ids = _source_steps(run, module, view, coql_query, count)
    source: Literal["trusted", "all"] | None = (
        "all" if all_records else "trusted" if (view or coql_query) else None
    )
    _emails_step(run, module, first_ids, sample, verify, source, min_hours_since_bounce, now)
    run.scope_check(f"unblock {module}", need.unblock(module), True, "")
    run.scope_check(
        f"tag {module}",
        need.add_tags(module),
        needs_person_tag is not None,
        "no needs_person_tag given",
    )
    return report


def _source_steps(
    run: _Preflight, module: str, view: str | None, coql_query: str | None, count: bool
) -> list[str]:
    """Resolve and count the source; the first page's ids (for the sample)."""
    report = run.report
    client = run.client
    first: list[str] = []

    if view is not None:
        from airflow_provider_zohocrm.zoho.views import resolve_view

        def resolve() -> str:
            found = resolve_view(client, module, view)
            report.view_id = found.id
            return f"{module} view {found.label()}"

        run.read_step("custom views", need.custom_views_read(), True, resolve)
    else:
        run.scope_check("custom views", need.custom_views_read(), False, "no view given")

    if coql_query is not None:

        def coql() -> str:
            rows, more = _coql_page(client, coql_query, FIRST_PAGE)
            first.extend(rows)
            return _count_text(
                report, f"the COQL query on {module}", len(rows), more, count, client, coql_query
            )

        if run.read_step("COQL", need.coql_read(), True, coql) is not None:
            report.add(f"read {module}", "ok", "proven by the COQL query")
        else:
            run.scope_check(f"read {module}", need.module_read(module), True, "")
        return first

    if run.scopes is None:  # nothing to compare with: a one-row query proves the scope (1 credit)
        probe = f"select id from {module} where id is not null"
        run.read_step("COQL", need.coql_read(), False, lambda: _coql_probe(client, probe))
    else:
        run.scope_check("COQL", need.coql_read(), False, "no coql_query given")

    def records() -> str:
        if report.view_id is None:  # no view (or it was not found): prove the scope with one record
            rows, _more = _records_page(client, module, None, 1)
            first.extend(rows)
            return f"{module} records are readable"
        rows, more = _records_page(client, module, report.view_id, FIRST_PAGE)
        first.extend(rows)
        label = f"view {report.view_id}"
        return _count_text(report, label, len(rows), more, count, client, None, module=module)

    run.read_step(f"read {module}", need.module_read(module), True, records)
    if view is not None and report.view_id is None:
        return []  # the view was not found: never sample other records in its name
    return first


def _coql_probe(client: ZohoCRMClient, query: str) -> str:
    _coql_page(client, query, 1)
    return "readable (probed with a one-row query)"


def _count_text(
    report: PreflightReport,
    label: str,
    first_page: int,
    more: bool,
    count: bool,
    client: ZohoCRMClient,
    coql_query: str | None,
    *,
    module: str = "",
) -> str:
    if more and count:
        if coql_query is not None:
            total = sum(1 for _ in client.iter_coql(coql_query))
        else:
            total = sum(1 for _ in client.iter_records(module, cvid=report.view_id))
        report.record_count, report.record_count_exact = total, True
        return f"{label} lists {total:,} record(s) (counted)"
    report.record_count, report.record_count_exact = first_page, not more
    if more:
        return f"{label} lists more than {first_page:,} records (first page read; --count counts them all)"
    if first_page == 0:
        return f"{label} lists no records today: nothing to unblock (is it the right source?)"
    return f"{label} lists {first_page:,} record(s)"


def _records_page(
    client: ZohoCRMClient, module: str, cvid: str | None, per_page: int
) -> tuple[list[str], bool]:
    params: dict[str, Any] = {"fields": "id", "per_page": per_page, "page": 1}
    if cvid:
        params["cvid"] = cvid
    response = client.request("GET", module, params=params, purpose="records", module=module)
    return _ids_and_more(response.body)


def _coql_page(client: ZohoCRMClient, query: str, limit: int) -> tuple[list[str], bool]:
    module = coql_module(query)
    body = {"select_query": f"{validate_coql(query)} limit {limit} offset 0"}
    response = client.request("POST", "coql", json=body, purpose="coql", module=module)
    return _ids_and_more(response.body)


def _ids_and_more(body: Any) -> tuple[list[str], bool]:
    if not isinstance(body, dict):  # 204: nothing
        return [], False
    data = body.get("data")
    info = body.get("info")
    data = data if isinstance(data, list) else []
    info = info if isinstance(info, dict) else {}
    return [str(row["id"]) for row in data if isinstance(row, dict) and "id" in row], bool(
        info.get("more_records")
    )


def _emails_step(
    run: _Preflight,
    module: str,
    first_ids: Sequence[str],
    sample: int,
    verify: str | None,
    source: Literal["trusted", "all"] | None,
    min_hours_since_bounce: float,
    now: datetime | None,
) -> None:
    """Read the Emails lists of the first ``sample`` records of the source. A trusted source (a view or COQL
    query said to list bounced records) that lists records which never bounced gets a warning: the view does not
    do what its name says. ``all``: the whole module, where such records are expected."""
    name = "Emails related list"
    scope_need = need.emails_read()
    required = verify == "emails"
    if sample == 0 or (not first_ids and source is not None):
        why = "--sample 0" if sample == 0 else "the source lists no records"
        run.scope_check(name, scope_need, required, f"{why}; needed for verify='emails'")
        return
    if source is None:
        if run.scopes is not None or not first_ids:
            run.scope_check(
                name, scope_need, required, "no view or COQL source to sample; needed for verify='emails'"
            )
            return
        first_ids = first_ids[:1]  # scopes unknown: probe with one record of the module
    from airflow_provider_zohocrm.zoho.emails import check_bounce

    picked = list(itertools.islice(first_ids, sample))
    when = now or datetime.now(UTC)
    verdicts: dict[str, str] = {}

    def call() -> str:
        for rid in picked:
            verdicts[rid] = str(
                check_bounce(
                    run.client, module, rid, now=when, min_hours_since_bounce=min_hours_since_bounce
                ).verdict
            )
        counted = {v: sum(1 for x in verdicts.values() if x == v) for v in dict.fromkeys(verdicts.values())}
        summary = ", ".join(f"{n} {verdict}" for verdict, n in counted.items())
        return f"read the Emails lists of {len(picked)} record(s): {summary}"

    detail = run.read_step(name, scope_need, required, call)
    if detail is None or source != "trusted":
        return
    never = [rid for rid, verdict in verdicts.items() if verdict == "none"]
    if never:
        check = run.report.checks[-1]
        check.status = "warn"
        check.detail += (
            f". {len(never)} of {len(picked)} sampled record(s) show no bounce (latest email not bounced, or none"
            f" within Zoho's 100-day retention): {', '.join(never)}"
        )
        check.fix = (
            "The source may not list bounced records. Run with verify='emails' (those records are then reported"
            " not_blocked, without an unblock call), or fix the view's criteria."
        )


# -- the connection form's Test button ---------------------------------------------------------------------


def _covered_modules(granted: Sequence[str], make: Callable[[str], ScopeNeed]) -> str | None:
    """ "every module", a list of the modules the granted scopes allow, or None."""
    if granted_by(granted, make("Zz_any_custom_module")):
        return "every module"
    named = {
        part
        for scope in granted
        for part in scope.split(".")[2:-1]
        if part and part.lower() not in ("all", "emails")
    }
    modules = [m for m in dict.fromkeys([*SUPPORTED_MODULES, *sorted(named)]) if granted_by(granted, make(m))]
    return ", ".join(modules) if modules else None


def connection_checks(hook: ZohoCRMHook) -> PreflightReport:
    """What the Test button runs: the token, the org, and the scopes Zoho listed (no other call)."""
    report = PreflightReport(conn_id=hook.zohocrm_conn_id)
    run = _Preflight(hook, report)
    if not run.connection_and_token():
        return report
    run.org()
    granted = run.scopes
    if granted is None:
        report.add(
            "scopes",
            "unverified",
            "Zoho listed no scopes in its token answer; run `python -m airflow_provider_zohocrm check` to probe"
            " the read scopes",
        )
        return report
    for label, make, required in (
        ("read records", need.module_read, True),
        ("unblock", need.unblock, True),
        ("tag records", need.add_tags, False),
    ):
        modules = _covered_modules(granted, make)
        if modules:
            report.add(label, "ok", modules)
        elif required:
            report.add(label, "fail", "no granted scope allows it for any module", _fix(make("{module}")))
        else:
            report.add(
                label, "skip", f"not granted (needed for needs_person_tag: {make('{module}').describe()})"
            )
    for label, scope_need in (
        ("custom views", need.custom_views_read()),
        ("COQL", need.coql_read()),
        ("Emails related list", need.emails_read()),
    ):
        scope = granted_by(granted, scope_need)
        if scope:
            report.add(label, "ok", f"granted by {scope}")
        else:
            report.add(label, "skip", f"not granted ({scope_need.why}: {scope_need.describe()})")
    return report
