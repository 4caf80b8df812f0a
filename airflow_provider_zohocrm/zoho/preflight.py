"""Preflight: try a real Zoho org before the first night, changing nothing.

``python -m airflow_provider_zohocrm check --conn-id zohocrm_default --module Leads --view "Bounced leads"``, or
``ZohoCRMHook("zohocrm_default").preflight(module="Leads", view="Bounced leads")`` from Python; without Airflow,
:func:`run_preflight` with a :class:`~.client.ZohoCRMClient` and the connection's settings. It obtains a token, compares the scopes Zoho granted (the token response's
``scope``) with what each step of the job needs, reads the org and the data center, resolves the view, counts
its records, and reads the Emails lists of a few of them, warning when the view lists records that never
bounced. It makes no unblock call and no tag call: whatever it cannot prove by reading is marked unverified.

Every step ends in one :class:`Check`: ✓ ok, ✗ fail (with the fix), ! warn, ? unverified, - not needed. A
report with any ✗ is not ``ok`` (the command exits 1).

The connection form's Test button (``ZohoCRMHook.test_connection``) runs :func:`connection_checks`: the token,
the org, and the scopes — no other call. The hook calls down into this module; nothing here knows the hook.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from airflow_provider_zohocrm.zoho import scopes as need
from airflow_provider_zohocrm.zoho.client import ZohoCRMClient
from airflow_provider_zohocrm.zoho.datacenters import Endpoints
from airflow_provider_zohocrm.zoho.errors import (
    ZohoCRMError,
    ZohoResponseError,
    ZohoScopeError,
    ZohoServerError,
    ZohoTokenThrottledError,
    ZohoTransportError,
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

Status = Literal["ok", "fail", "warn", "unverified", "skip"]
SYMBOLS: dict[str, str] = {"ok": "✓", "fail": "✗", "warn": "!", "unverified": "?", "skip": "-"}
#: Records read on the first page of a view or COQL query (one call).
FIRST_PAGE = 200
DEFAULT_SAMPLE = 3
CONNECTION_FIX = "Fix the connection (README: 'The connection')."
MISSING_CONNECTION_FIX = "Create the connection first."
SCOPE_FIX = (
    "Generate a new refresh token whose scopes include {scopes} (README: 'Getting a refresh token') and put it"
    " in the connection's refresh_token."
)


class ConnectionSettings(Protocol):
    """What the preflight reads of a connection's validated settings (the hook's ``ZohoConnectionSettings``)."""

    @property
    def endpoints(self) -> Endpoints: ...

    @property
    def api_version(self) -> str: ...


@dataclass(frozen=True)
class Check:
    """One line of the checklist; ``fix`` says what to do about a ✗ (or a !). Recorded once, never edited."""

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
        return self.record(Check(name, status, detail, fix))

    def record(self, item: Check) -> Check:
        """Append a step's check (the checklist keeps the order the steps ran in)."""
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


def token_fix(exc: ZohoCRMError) -> str:
    """What to do when no access token could be had: the error's own fix (a wrong secret, a revoked refresh
    token, the wrong data center name theirs), else one by the kind of failure."""
    if exc.fix:
        return exc.fix
    if isinstance(exc, ZohoTokenThrottledError):
        minutes = max(1, round(exc.retry_after / 60))
        return (
            f"Wait about {minutes} minute(s) before the next try (a try sooner extends Zoho's throttle), and give"
            " every other tool that uses this refresh token one of its own."
        )
    if isinstance(exc, ZohoTransportError | ZohoServerError | ZohoResponseError):
        return (
            "Check that this machine reaches the accounts server named above (proxy, firewall, DNS) and that the"
            " connection's data_center is the one of your Zoho CRM login page; then run the preflight again."
        )
    return (
        "Check the connection's client ID (login), client secret (password), refresh_token and data_center"
        " against the Zoho API console (README: 'The connection'); then run the preflight again."
    )


def _fix(scope_need: ScopeNeed) -> str:
    return SCOPE_FIX.format(scopes=scope_need.describe())


def unusable_connection(conn_id: str, detail: str, fix: str = CONNECTION_FIX) -> PreflightReport:
    """The report of a connection whose settings cannot be read (missing, incomplete): its one ✗."""
    report = PreflightReport(conn_id=conn_id)
    report.add("connection", "fail", detail, fix)
    return report


class _Preflight:
    """The steps, sharing what earlier steps learnt (the token's scopes, the view's first page)."""

    def __init__(self, client: ZohoCRMClient, settings: ConnectionSettings, report: PreflightReport) -> None:
        self.client = client
        self.settings = settings
        self.report = report
        self.scopes: list[str] | None = None

    def connection_and_token(self) -> bool:
        """The connection's settings and a token; False when the rest cannot run."""
        report = self.report
        settings = self.settings
        endpoints = settings.endpoints
        report.add(
            "connection",
            "ok",
            f"data center {endpoints.data_center.name!r}, accounts server {endpoints.accounts_url},"
            f" API {settings.api_version}",
        )
        try:
            token = self.client.tokens.get_token()
        except ZohoCRMError as exc:
            report.add("access token", "fail", exc.describe_cause(), token_fix(exc))
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

    def read_step(self, name: str, scope_need: ScopeNeed, required: bool, call: Callable[[], str]) -> Check:
        """Run a read call and record the step, judged by Zoho's answer; returns its check."""
        return self.report.record(self.judge_read(name, scope_need, required, call))

    def judge_read(self, name: str, scope_need: ScopeNeed, required: bool, call: Callable[[], str]) -> Check:
        """Run a read call and judge the step by Zoho's answer, without recording it (a caller that learns
        more from the answer records its own verdict)."""
        try:
            detail = call()
        except ZohoScopeError:
            status: Status = "fail" if required else "warn"
            have = "" if self.scopes is None else " (none of the granted scopes covers it)"
            return Check(
                name, status, f"Zoho refused: the token lacks {scope_need.describe()}{have}", _fix(scope_need)
            )
        except ZohoValidationError as exc:
            return Check(name, "fail", str(exc), "Use one of the names or ids listed.")
        except ZohoCRMError as exc:
            return Check(name, "fail" if required else "warn", exc.describe_cause(), exc.fix)
        if self.scopes is not None and not granted_by(self.scopes, scope_need):
            detail += f" (Zoho allowed it, though no granted scope names {scope_need.describe()})"
        return Check(name, "ok", detail)

    def org(self) -> None:
        def call() -> str:
            org = self.client.get_org()
            self.report.org = org
            license_details = org.get("license_details")
            edition = license_details.get("paid_type") if isinstance(license_details, dict) else None
            parts = [
                f"{org.get('company_name') or 'unnamed org'!r} (id {org.get('id')})",
                f"data center {self.settings.endpoints.data_center.name!r}",
                f"API domain {self.client.tokens.get_token().api_domain}",
            ]
            if edition:
                parts.append(f"edition {edition}")
            return ", ".join(parts)

        self.read_step("org", need.org_read(), True, call)


@dataclass(frozen=True)
class PreflightRequest:
    """What to check, validated (build it with :meth:`checked`, before any call or connection read)."""

    module: str = "Leads"
    view: str | None = None
    coql_query: str | None = None
    all_records: bool = False
    verify: str | None = None
    needs_person_tag: str | None = None
    count: bool = False
    sample: int = DEFAULT_SAMPLE
    min_hours_since_bounce: float = 0

    @classmethod
    def checked(
        cls,
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
    ) -> PreflightRequest:
        """Check one source the way the DAG will use it.

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
        :raises ZohoValidationError: on bad input.
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
        return cls(
            module=module,
            view=view,
            coql_query=coql_query,
            all_records=bool(all_records),
            verify=verify,
            needs_person_tag=needs_person_tag,
            count=count,
            sample=sample,
            min_hours_since_bounce=min_hours_since_bounce,
        )


def run_preflight(
    client: ZohoCRMClient,
    settings: ConnectionSettings,
    request: PreflightRequest,
    *,
    conn_id: str = "",
    now: datetime | None = None,
) -> PreflightReport:
    """Check a connection (its client and settings) and one source the way the DAG will use them, read-only.

    :param conn_id: the connection's name, for the report's heading.
    :param now: the time the sample's bounces are judged at (default: now).
    """
    report = PreflightReport(conn_id=conn_id)
    run = _Preflight(client, settings, report)
    if not run.connection_and_token():
        return report
    run.org()
    module, view, coql_query = request.module, request.view, request.coql_query
    if not _module_step(run, module):
        return report  # an unknown module: every later step would only echo Zoho's unnamed refusal
    first_ids = _source_steps(run, module, view, coql_query, request.count)
    source: Literal["trusted", "all"] | None = (
        "all" if request.all_records else "trusted" if (view or coql_query) else None
    )
    _emails_step(
        run, module, first_ids, request.sample, request.verify, source, request.min_hours_since_bounce, now
    )
    run.scope_check(f"unblock {module}", need.unblock(module), True, "")
    run.scope_check(
        f"tag {module}",
        need.add_tags(module),
        request.needs_person_tag is not None,
        "no needs_person_tag given",
    )
    return report


def _module_step(run: _Preflight, module: str) -> bool:
    """The module against the org's modules (``settings/modules``, one call), as the DAG's first Zoho task
    checks it; False when the org has no such module (the ✗ names the close matches: "did you mean 'Leads'?").
    A token without ``ZohoCRM.settings.modules.READ`` is not refused: the run skips the check too."""
    from airflow_provider_zohocrm.zoho.modules import check_module, list_modules

    scope_need = need.modules_read()
    if run.scopes is not None and not granted_by(run.scopes, scope_need):
        run.report.add(
            "module",
            "warn",
            f"{module!r} not checked against the org's modules: no granted scope allows listing them (needs"
            f" {scope_need.describe()}); a misspelled module then fails on Zoho's unnamed INVALID_QUERY",
            _fix(scope_need),
        )
        return True

    def call() -> str:
        modules = list_modules(run.client)
        found = check_module(modules, module)
        return f"{found.api_name} ({found.label}) is one of the org's {len(modules)} modules"

    check = run.judge_read("module", scope_need, False, call)
    if check.status == "fail":
        check = replace(
            check,
            fix="Use the module's API name (Zoho: Setup > Developer Hub > APIs and SDKs > API names); the later"
            " steps are not run.",
        )
    run.report.record(check)
    return check.status != "fail"


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
            page = client.coql_page(coql_query, limit=FIRST_PAGE)
            first.extend(page.ids)
            return _count_text(
                report, f"the COQL query on {module}", len(page.ids), page.more, count, client, coql_query
            )

        if run.read_step("COQL", need.coql_read(), True, coql).status == "ok":
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
            first.extend(client.records_page(module, per_page=1).ids)
            return f"{module} records are readable"
        page = client.records_page(module, cvid=report.view_id, per_page=FIRST_PAGE)
        first.extend(page.ids)
        label = f"view {report.view_id}"
        return _count_text(report, label, len(page.ids), page.more, count, client, None, module=module)

    run.read_step(f"read {module}", need.module_read(module), True, records)
    if view is not None and report.view_id is None:
        return []  # the view was not found: never sample other records in its name
    return first


def _coql_probe(client: ZohoCRMClient, query: str) -> str:
    client.coql_page(query, limit=1)
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

    check = run.judge_read(name, scope_need, required, call)
    never = [rid for rid, verdict in verdicts.items() if verdict == "none"]
    if check.status == "ok" and source == "trusted" and never:
        check = replace(
            check,
            status="warn",
            detail=f"{check.detail}. {len(never)} of {len(picked)} sampled record(s) show no bounce (latest email"
            f" not bounced, or none within Zoho's 100-day retention): {', '.join(never)}",
            fix="The source may not list bounced records. Run with verify='emails' (those records are then"
            " reported not_blocked, without an unblock call), or fix the view's criteria.",
        )
    run.report.record(check)


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


def connection_checks(
    client: ZohoCRMClient, settings: ConnectionSettings, *, conn_id: str = ""
) -> PreflightReport:
    """What the Test button runs: the token, the org, and the scopes Zoho listed (no other call)."""
    report = PreflightReport(conn_id=conn_id)
    run = _Preflight(client, settings, report)
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
