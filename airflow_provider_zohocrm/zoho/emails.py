"""A record's Emails related list: the one place Zoho's API documents a record's bounces.

``GET /crm/{version}/{module}/{record_id}/Emails`` returns ten emails per call, paged with an opaque ``index``
(pass back ``info.next_index``), and HTTP 204 when the record has no email within Zoho's 100-day retention.
Each email carries ``status[]`` entries; a bounce is ``{"type": "bounced", "category": "Temporarily blocked",
"sub_category": …, "bounced_reason": …, "bounced_time": …}`` (Zoho's v7/v8 docs, v8 OpenAPI spec
``email_related_records.json``, v8 Python SDK). Scope: ``ZohoCRM.modules.emails.READ`` with
``ZohoCRM.modules.{module}.READ``.

``owner_id``: the v8 OpenAPI spec marks it required, but Zoho's docs call it optional and usable "only with
type=user_emails", their examples send neither, and Zoho's v8 SDK sends it only when the caller sets it. So it is
never sent here; neither is ``type`` (Zoho's default: the user's emails and the ones sent from CRM).

Order: Zoho's documented sample lists the newest email first, so reading stops at the first page that holds a
sent email with a status (received mail synced from a mailbox, drafts and scheduled emails carry none and are
skipped). When a page's times run oldest first instead, the pages are read to the end. Either way no more is
read than needed to find the latest status.

No Airflow import: the hook and the operator build on this.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import getaddresses
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_provider_zohocrm.zoho.errors import ZohoRequestError, ZohoResponseError
from airflow_provider_zohocrm.zoho.redact import redact_addresses
from airflow_provider_zohocrm.zoho.validation import validate_module, validate_record_ids

if TYPE_CHECKING:
    from airflow_provider_zohocrm.zoho.client import ZohoCRMClient

log = logging.getLogger(__name__)

#: Emails per call (Zoho's docs: "ten emails per API call").
EMAILS_PER_PAGE = 10
#: Days Zoho keeps email status (Email Insights): older bounces are invisible to this API.
EMAIL_RETENTION_DAYS = 100
#: Why an id was not checked: the task's ``max_email_checks`` ran out.
BUDGET_REASON = "email-check budget reached"


class Verdict(StrEnum):
    """What a record's latest email says about its address."""

    SOFT = "soft"  # latest email bounced temporarily: an unblock target
    HARD = "hard"  # latest email bounced permanently: Zoho never unblocks it
    NONE = "none"  # latest email did not bounce, or no email at all: nothing is blocked
    DEFERRED = "deferred"  # a soft bounce too recent for the policy, or not checked (budget)
    UNKNOWN = "unknown"  # a shape or category this code does not know: let Zoho's unblock answer decide


@dataclass(frozen=True)
class BounceCheck:
    """The verdict on one record, with Zoho's bounce details and the calls it took.

    ``note`` says why, in our words, for deferred and unknown verdicts (``reason`` is Zoho's bounce reason).
    """

    verdict: str
    category: str | None = None
    sub_category: str | None = None
    reason: str | None = None
    bounced_time: str | None = None
    calls: int = 0
    note: str = ""

    def details(self) -> dict[str, str | None]:
        """The fields a person needs to judge the record (for the report)."""
        return {
            "category": self.category,
            "sub_category": self.sub_category,
            "reason": self.reason,
            "bounced_time": self.bounced_time,
        }


class CallBudget:
    """At most ``limit`` Emails calls, shared by the threads of one task (``None``: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.spent = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Reserve one call; False once the budget is spent."""
        with self._lock:
            if self.limit is not None and self.spent >= self.limit:
                return False
            self.spent += 1
            return True


# -- pure classification ------------------------------------------------------------------------------------

_SOFT_WORDS = re.compile(r"\b(temporar(y|ily)|soft)\b")
_HARD_WORDS = re.compile(r"\b(permanent(ly)?|hard)\b")


def bounce_kind(category: Any) -> str | None:
    """``"soft"`` or ``"hard"`` from Zoho's bounce category, tolerant of case and wording ("Temporarily
    blocked", "temporary", "Soft bounce"; "Permanently blocked", "permanent", "Hard bounce"); else None."""
    if not isinstance(category, str):
        return None
    text = re.sub(r"[^a-z]+", " ", category.lower())
    soft, hard = bool(_SOFT_WORDS.search(text)), bool(_HARD_WORDS.search(text))
    if soft == hard:  # neither, or both ("soft, then hard"): not ours to guess
        return None
    return "soft" if soft else "hard"


def parse_time(value: Any) -> datetime | None:
    """Zoho's ISO 8601 times (``2023-11-03T08:10:58+05:30``), as aware datetimes; None if absent or odd."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def email_time(email: Mapping[str, Any]) -> datetime | None:
    """When an email was sent: ``time`` in the list answer, ``sent_time`` in the single-email answer."""
    return parse_time(email.get("time")) or parse_time(email.get("sent_time"))


def carries_status(email: Mapping[str, Any]) -> bool:
    """Whether an email says something about the address: a sent email with status entries. Drafts and
    scheduled emails (``sent: false``) and received mail synced from a mailbox (no status) say nothing, so
    they never hide an older bounce."""
    if not isinstance(email, Mapping) or email.get("sent") is False:
        return False
    status = email.get("status")
    return status is not None and status != []


def event_time(email: Mapping[str, Any]) -> datetime | None:
    """When an email last said something about its address: its latest bounce time when it bounced (a bounce
    can arrive hours or days after the send, once retries are exhausted), else its send time."""
    status = email.get("status")
    bounce_times = [
        t
        for s in (status if isinstance(status, list) else [])
        if isinstance(s, Mapping) and str(s.get("type") or "").strip().lower().startswith("bounce")
        for t in [parse_time(s.get("bounced_time"))]
        if t is not None
    ]
    sent_at = email_time(email)
    return max([*bounce_times, *([sent_at] if sent_at is not None else [])], default=None)


def latest_email(emails: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The email with the latest event that carries a status (:func:`event_time`: a bounce counts when it
    arrived, so a mail whose bounce came after a newer mail's bounce, or after a newer mail was delivered, is
    the latest), when every such email has a time; else the first (Zoho lists newest first)."""
    sent = [e for e in emails if carries_status(e)]
    if not sent:
        return None
    times = [event_time(e) for e in sent]
    if all(t is not None for t in times):
        newest = max(range(len(sent)), key=lambda i: (times[i], -i))  # ties: the earlier in the list
        return sent[newest]
    return sent[0]


def runs_oldest_first(emails: Sequence[Mapping[str, Any]]) -> bool:
    """True when a page's times show oldest-first order (so the newest email is on a later page)."""
    times = [email_time(e) for e in emails if isinstance(e, Mapping)]
    known = [t for t in times if t is not None]
    return len(known) >= 2 and known[0] < known[-1]


def classify_emails(
    emails: Sequence[Mapping[str, Any]],
    *,
    now: datetime | Callable[[], datetime],
    min_hours_since_bounce: float = 0,
    calls: int = 0,
) -> BounceCheck:
    """The verdict from a record's emails (any order): the latest sent email decides.

    A temporary bounce is ``soft`` (``deferred`` when younger than ``min_hours_since_bounce``), a permanent
    one ``hard``; no bounce in the latest email, or no email, is ``none``. A shape or category not known here
    is ``unknown``, logged as a warning, so that the unblock call's answer decides.
    """
    email = latest_email(emails)
    if email is None:
        return BounceCheck(Verdict.NONE, calls=calls, note="no sent email within Zoho's retention")
    status = email.get("status")
    if not isinstance(status, list) or not all(isinstance(s, Mapping) for s in status):
        return BounceCheck(Verdict.UNKNOWN, calls=calls, note=f"latest email has status {status!r}")
    bounces = [s for s in status if str(s.get("type") or "").strip().lower().startswith("bounce")]
    if not bounces:
        return BounceCheck(Verdict.NONE, calls=calls)
    bounce = max(bounces, key=lambda s: parse_time(s.get("bounced_time")) or datetime.min.replace(tzinfo=UTC))
    found = BounceCheck(
        Verdict.SOFT,
        category=_text(bounce.get("category")),
        sub_category=_text(bounce.get("sub_category")),
        reason=_redacted(bounce.get("bounced_reason")),
        bounced_time=_text(bounce.get("bounced_time")),
        calls=calls,
    )
    kind = bounce_kind(bounce.get("category"))
    if kind == "hard":
        return replace(found, verdict=Verdict.HARD)
    if kind is None:
        return replace(
            found, verdict=Verdict.UNKNOWN, note=f"bounce category {bounce.get('category')!r} is not known"
        )
    if min_hours_since_bounce > 0:
        when = parse_time(bounce.get("bounced_time")) or email_time(email)
        if when is None:
            return replace(found, note="bounce time unknown: min_hours_since_bounce not applied")
        age_hours = (_now(now) - when).total_seconds() / 3600
        if age_hours < min_hours_since_bounce:
            return replace(
                found,
                verdict=Verdict.DEFERRED,
                note=f"bounced {max(age_hours, 0):.1f} h ago, less than min_hours_since_bounce="
                f"{min_hours_since_bounce:g}",
            )
    return found


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _redacted(value: Any) -> str | None:
    """Zoho's bounce reason with any quoted address redacted (what a run keeps names no address)."""
    return None if value is None else redact_addresses(str(value))


def _now(now: datetime | Callable[[], datetime] | None) -> datetime:
    """``now`` given as a time, or as a clock read when needed (Zoho's clock, known once Zoho has answered)."""
    if now is None:
        return datetime.now(UTC)
    return now() if callable(now) else now


# -- reading ------------------------------------------------------------------------------------------------


def _emails_path(module: str, record_id: str) -> str:
    module = validate_module(module)
    (record_id,) = validate_record_ids([record_id])  # it becomes part of the URL path
    return f"{module}/{record_id}/Emails"


def iter_email_pages(
    client: ZohoCRMClient,
    module: str,
    record_id: str,
    *,
    budget: CallBudget | None = None,
    email_type: str | None = None,
) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Yield ``(emails, info)`` per page, following ``info.next_index`` while ``more_records``; nothing for a
    204. ``email_type`` is Zoho's ``type`` filter (``sent_from_crm``: only mail the CRM sent). Stops (without
    calling) when ``budget`` is spent: the caller sees the pages it got."""
    path = _emails_path(module, record_id)
    index: str | None = None
    seen: set[str] = set()
    while True:
        if budget is not None and not budget.take():
            raise _BudgetSpent
        params = {"type": email_type} if email_type else {}
        if index:
            params["index"] = index
        response = client.request("GET", path, params=params or None, purpose="emails", module=module)
        if response.status == 204 or response.body is None:
            return
        body = response.body
        if not isinstance(body, dict) or not isinstance(body.get("Emails"), list):
            raise ZohoResponseError(
                f"Zoho's answer to GET {module}/…/Emails has no 'Emails' list", status=response.status
            )
        info = body.get("info") if isinstance(body.get("info"), dict) else {}
        assert isinstance(info, dict)
        yield [e for e in body["Emails"] if isinstance(e, dict)], info
        next_index = info.get("next_index")
        if not info.get("more_records") or not next_index:
            return
        next_index = str(next_index)
        if next_index in seen or next_index == index:
            raise ZohoResponseError(f"Zoho's Emails paging repeats index {next_index[:16]}…")
        seen.add(next_index)
        index = next_index


def _refused(exc: ZohoRequestError, module: str, record_id: str, calls: int) -> BounceCheck:
    """A record Zoho calls invalid, or whose emails this user may not see, is ``unknown``: the unblock call
    reports it. Any other refusal is about the request, and propagates."""
    per_record = (
        exc.code == "INVALID_DATA" and "param_name" not in exc.details
    ) or exc.code == "NO_PERMISSION"
    if not per_record:
        raise exc
    log.warning("Emails of %s %s could not be read (%s); the unblock call decides.", module, record_id, exc)
    return BounceCheck(Verdict.UNKNOWN, calls=calls + 1, note=f"Emails list refused: {exc}")


class _BudgetSpent(Exception):
    """Internal: the task's email-check budget ran out before the next page."""


def iter_emails(client: ZohoCRMClient, module: str, record_id: str) -> Iterator[dict[str, Any]]:
    """Every email of a record within Zoho's retention, in Zoho's order (one call per ten emails)."""
    for emails, _info in iter_email_pages(client, module, record_id):
        yield from emails


def check_bounce(
    client: ZohoCRMClient,
    module: str,
    record_id: str,
    *,
    now: datetime | Callable[[], datetime] | None = None,
    min_hours_since_bounce: float = 0,
    budget: CallBudget | None = None,
) -> BounceCheck:
    """Read a record's Emails list only as deep as needed to find its latest status, and classify it.

    Newest-first pages (Zoho's documented order) stop after the first page; oldest-first pages are read to the
    end. A spent ``budget`` gives ``deferred`` with :data:`BUDGET_REASON`. A record Zoho calls invalid (or whose
    emails this user may not see) is ``unknown``, so the unblock call reports it. Other errors propagate.
    """
    collected: list[dict[str, Any]] = []
    calls = 0
    try:
        for emails, _info in iter_email_pages(client, module, record_id, budget=budget):
            calls += 1
            collected.extend(emails)
            if not runs_oldest_first(emails) and any(carries_status(e) for e in emails):
                break  # newest first: this page holds the latest status
    except _BudgetSpent:
        return BounceCheck(Verdict.DEFERRED, calls=calls, note=BUDGET_REASON)
    except ZohoRequestError as exc:
        return _refused(exc, module, record_id, calls)
    check = classify_emails(
        collected, now=_now(now), min_hours_since_bounce=min_hours_since_bounce, calls=calls
    )
    if check.verdict == Verdict.UNKNOWN:
        log.warning(
            "%s %s: %s; sending it to the unblock call so that Zoho's answer decides.",
            module,
            record_id,
            check.note,
        )
    return check


# -- per address (issue 19) ---------------------------------------------------------------------------------
#
# Zoho blocks an address, not a record: Email and Secondary_Email are blocked, and unblocked, one by one. So each
# field is judged by the latest mail the CRM sent to *its* address (the ``to`` of each email, compared without
# case). Decisions, each tested:
# - A field with no address (empty or missing) is ``none``: nothing to block, nothing to spend.
# - The address now on the record decides. Mail to an address the record no longer holds (it changed) says
#   nothing about the new one; the new address with no mail of its own is ``none`` (it never bounced).
# - Only mail the CRM sent counts: :func:`check_addresses` asks Zoho for ``type=sent_from_crm``, so mail a
#   user sent from their own mailbox, replies, drafts and scheduled mail never hide a bounce. The pure
#   :func:`classify_addresses` judges whatever list it is given (drafts and unsent mail are skipped as today).
# - The latest mail is the one with the latest *event* (:func:`event_time`): a bounce counts when it arrived.
# - A mail whose ``to`` names several of the record's addresses (all of them, not only the fields being
#   unblocked) counts for each of them. When such a mail is a field's latest and bounced, the bounce cannot be
#   pinned on one address: a soft bounce is judged as any soft bounce (``deferred`` while younger than the
#   policy, ``check_domain`` applies, else sent, and Zoho's answer decides), a hard bounce is ``unknown`` (sent:
#   it may be the other address's).
# - ``to`` may be Zoho's objects or text: ``"Kim <k@x.org>"``, ``{"email": "Kim <k@x.org>"}``,
#   ``"a@x.org, b@y.org"`` (read with :func:`email.utils.getaddresses`). A mail whose ``to`` names no one, or
#   cannot be read, belongs to no known address: a field whose own mails say ``none`` while such a mail is as
#   new as its latest own mail (or newer) is ``unknown`` (the unreadable mail may be its own latest bounce: let
#   the unblock call decide), never ``none``.

#: The email fields Zoho's Unblock Email can unblock, in the order calls name them.
ADDRESS_FIELDS = ("Email", "Secondary_Email")
#: The Emails list ``type`` that holds only mail the CRM sent (Zoho's docs, v5-v8).
CRM_SENT_TYPE = "sent_from_crm"


def normalise_address(value: Any) -> str | None:
    """An address as compared here: trimmed, lower case; None when empty or not a string."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    return text or None


def _parse_to_text(text: str) -> tuple[set[str], bool]:
    """The addresses in one ``to`` text (display names and comma lists allowed), and whether all of it read."""
    found: set[str] = set()
    readable = True
    for _name, address in getaddresses([text]):
        normal = normalise_address(address)
        local, at, domain = (normal or "").rpartition("@")
        if normal is None or not at or not local or not domain or any(c.isspace() for c in normal):
            readable = False
            continue
        found.add(normal)
    return found, readable and bool(found)


def read_recipients(email: Mapping[str, Any]) -> tuple[frozenset[str], bool]:
    """The normalised addresses an email's ``to`` names, and whether every entry could be read.

    Zoho documents ``[{"email": …, "user_name": …}]``; a bare string, a list of strings, display names
    (``"Kim <k@x.org>"``, in a string or in ``email``) and comma lists (``"a@x.org, b@y.org"``) are read too.
    An entry with no address (``{"email": null}``) names no one and is not an error; anything else that yields
    no address is unreadable."""
    raw = email.get("to") if isinstance(email, Mapping) else None
    if raw is None:
        return frozenset(), True
    items = raw if isinstance(raw, list) else [raw]
    found: set[str] = set()
    readable = True
    for item in items:
        value = item.get("email") if isinstance(item, Mapping) else item
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if not isinstance(value, str):
            readable = False
            continue
        addresses, ok = _parse_to_text(value)
        found |= addresses
        readable = readable and ok
    return frozenset(found), readable


def recipients(email: Mapping[str, Any]) -> frozenset[str]:
    """The normalised addresses an email's ``to`` names (see :func:`read_recipients`)."""
    return read_recipients(email)[0]


def _unattributed(email: Mapping[str, Any]) -> bool:
    """A mail that says something about an address, but whose ``to`` names no one or cannot be read."""
    if not carries_status(email):
        return False
    found, readable = read_recipients(email)
    return not found or not readable


def classify_addresses(
    emails: Sequence[Mapping[str, Any]],
    addresses: Mapping[str, str | None],
    *,
    now: datetime | Callable[[], datetime],
    min_hours_since_bounce: float = 0,
    calls: int = 0,
    record_addresses: Mapping[str, str | None] | None = None,
) -> dict[str, BounceCheck]:
    """Per field (the keys of ``addresses``, e.g. ``{"Email": "a@x.com", "Secondary_Email": None}``), the
    verdict of the latest sent mail to that field's address, as :func:`classify_emails` judges it.

    ``record_addresses``: every address of the record (default: ``addresses``), so that a mail to several of
    them is known as such even when only one field is judged. Pure. ``calls`` is the record's call count,
    repeated in each field's check (a record's Emails list is read once for all its fields). See the decisions
    above this function.
    """
    own = {f: normalise_address(a) for f, a in addresses.items()}
    every = {**(record_addresses or {}), **addresses}
    known = {a for a in (normalise_address(v) for v in every.values()) if a is not None}
    unattributed = [e for e in emails if _unattributed(e)]
    out: dict[str, BounceCheck] = {}
    for field_name, address in own.items():
        if address is None:
            out[field_name] = BounceCheck(
                Verdict.NONE, calls=calls, note=f"{field_name} is empty: no address to unblock"
            )
            continue
        mine = [e for e in emails if address in recipients(e)]
        if not any(carries_status(e) for e in mine):
            if unattributed:
                out[field_name] = BounceCheck(
                    Verdict.UNKNOWN,
                    calls=calls,
                    note="the record's emails do not name their recipients ('to'): the unblock call decides",
                )
            else:
                out[field_name] = BounceCheck(
                    Verdict.NONE,
                    calls=calls,
                    note=f"no mail sent to {field_name}'s address within Zoho's retention",
                )
            continue
        check = classify_emails(mine, now=now, min_hours_since_bounce=min_hours_since_bounce, calls=calls)
        latest = latest_email(mine)
        if check.verdict == Verdict.NONE and unattributed and _not_older(unattributed, latest):
            check = replace(
                check,
                verdict=Verdict.UNKNOWN,
                note="a mail as new as this address's latest does not say whom it went to ('to'): the unblock"
                " call decides",
            )
        shared = latest is not None and len(recipients(latest) & known) > 1
        if shared and check.verdict == Verdict.HARD:
            check = replace(
                check,
                verdict=Verdict.UNKNOWN,
                note="the latest hard bounce went to several of the record's addresses: the unblock call decides",
            )
        elif shared and check.verdict in (Verdict.SOFT, Verdict.DEFERRED):
            check = replace(
                check, note=check.note or "the latest bounce went to several of the record's addresses"
            )
        out[field_name] = check
    return out


def _not_older(others: Sequence[Mapping[str, Any]], latest: Mapping[str, Any] | None) -> bool:
    """Whether any of ``others`` is as new as ``latest`` or newer (unknown times: assume it is)."""
    mine = event_time(latest) if latest is not None else None
    if mine is None:
        return True
    return any((t := event_time(e)) is None or t >= mine for e in others)


def check_addresses(
    client: ZohoCRMClient,
    module: str,
    record_id: str,
    addresses: Mapping[str, str | None],
    *,
    now: datetime | Callable[[], datetime] | None = None,
    min_hours_since_bounce: float = 0,
    budget: CallBudget | None = None,
    email_type: str | None = CRM_SENT_TYPE,
    record_addresses: Mapping[str, str | None] | None = None,
) -> dict[str, BounceCheck]:
    """Read a record's Emails list once for all its fields, only as deep as needed, and judge each field.

    ``email_type`` (default ``sent_from_crm``) is Zoho's ``type`` filter: only mail the CRM sent. Newest-first
    pages stop once every field with an address found its latest mail; oldest-first pages are read to the end.
    A field with no address costs nothing; a record whose fields are all empty is not read at all. A spent
    ``budget`` makes every field not yet judged ``deferred`` with :data:`BUDGET_REASON`. A record Zoho calls
    invalid (or whose emails this user may not see) is ``unknown`` in every field. Other errors propagate.
    ``now``: a time, or a clock read after the list was read (the client's ``server_time``: Zoho's clock, known
    from Zoho's first answer); default the local clock. ``record_addresses``: every address of the record, for
    the rule on a mail to several of them (default: ``addresses``).
    """
    own = {f: normalise_address(a) for f, a in addresses.items()}
    wanted = {a for a in own.values() if a is not None}
    options: dict[str, Any] = {
        "min_hours_since_bounce": min_hours_since_bounce,
        "record_addresses": record_addresses,
    }
    if not wanted:
        return classify_addresses([], addresses, now=lambda: _now(now), **options)
    collected: list[dict[str, Any]] = []
    calls = 0
    settled: set[str] = set()  # addresses whose latest mail is known (newest-first pages only)
    newest_first = True
    try:
        for emails, _info in iter_email_pages(
            client, module, record_id, budget=budget, email_type=email_type
        ):
            calls += 1
            collected.extend(emails)
            if runs_oldest_first(emails):
                newest_first = False
            if newest_first:
                settled |= {a for e in emails if carries_status(e) for a in recipients(e) if a in wanted}
                if settled >= wanted:
                    break
    except _BudgetSpent:
        checks = classify_addresses(collected, addresses, now=_now(now), calls=calls, **options)
        return {
            f: check if own[f] is None or (newest_first and own[f] in settled) else _budget_deferred(calls)
            for f, check in checks.items()
        }
    except ZohoRequestError as exc:
        return dict.fromkeys(addresses, _refused(exc, module, record_id, calls))
    checks = classify_addresses(collected, addresses, now=_now(now), calls=calls, **options)
    for field_name, check in checks.items():
        if check.verdict == Verdict.UNKNOWN:
            log.warning(
                "%s %s %s: %s; sending it to the unblock call so that Zoho's answer decides.",
                module,
                record_id,
                field_name,
                check.note,
            )
    return checks


def _budget_deferred(calls: int) -> BounceCheck:
    return BounceCheck(Verdict.DEFERRED, calls=calls, note=BUDGET_REASON)
