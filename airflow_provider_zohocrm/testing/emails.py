"""Each record's Emails related list (``GET /crm/{v}/{module}/{id}/Emails``), in step with its block state.

What Zoho documents, and what this model follows (sources: Zoho's "Get Emails of a Record" pages v4-v6, the v8
OpenAPI file ``email_related_records.json`` of ``zoho/crm-oas``, and the v8 Python SDK ``zohocrmsdk8-0``):
- 10 emails per call; the answer is ``{"Emails": [...], "info": {"count", "next_index", "prev_index",
  "per_page", "more_records"}}``; a record without emails answers 204 with no body.
- ``index`` is opaque: a client passes back ``info.next_index`` (or ``prev_index``). An index this emulator
  never issued, or one issued for another record, answers 400 ``INVALID_DATA`` naming ``index``.
- ``owner_id``: the OAS marks it ``required``, but the docs say "optional ... only with ``type=user_emails``",
  their sample calls leave it out, and the SDK sends it only when set. We follow the docs and the SDK:
  optional; a non-numeric value answers 400 ``INVALID_DATA``.
- ``type`` (optional) filters by source; an unknown value answers 400 ``INVALID_DATA``.
- Scope: (``ZohoCRM.modules.{module}.READ`` or ``ZohoCRM.modules.READ``) **and**
  ``ZohoCRM.modules.emails.READ`` (the docs' "or ... and ..."; the OAS lists both in one requirement).
  ``ZohoCRM.modules.ALL`` covers both.
- Each email's ``status[]`` holds entries whose ``type`` is ``sent``, ``delivered``, ``opened`` (with
  ``first_open``, ``last_open``, ``count``) or ``bounced`` (with ``category``, ``sub_category``,
  ``bounced_reason``, ``bounced_time``). The OAS lists ``type``, ``bounced_time`` and ``bounced_reason`` as
  required on every entry, so non-bounce entries carry them as ``null``.
- Categories: ``"Temporarily blocked"`` (soft, unblockable) and ``"Permanently blocked"`` (hard). The first is
  the word in Zoho's docs sample; the second is assumed by symmetry (Zoho's UI says "blocked permanently").
- Zoho keeps email status data for 100 days (Email Insights page): older emails are not listed, by the
  emulator's clock.

Order (assumed, not documented): **newest first**, like the Emails related list in Zoho's UI and its "Latest
Email Status". ``EmailStore.order = "oldest_first"`` flips it, so clients can be tested against both readings.

A record that had no emails added explicitly gets a history derived from its block state (see
:func:`derived_history`), so every seeded or hand-made record's Emails list agrees with what Unblock Email
would answer. Unblocking does not add an email (Zoho sends nothing), so a bounce stays the latest email after
an unblock.

Per address: every email names its one recipient in ``to`` (``[{"email", "user_name"}]``, the OAS's
``UserDetails``), and Zoho blocks an address, not a record. Each email field (Email, Secondary_Email) has a
history of its own, derived from that field's own block state, and its own unblock events
(:meth:`EmailsService.field_unblock_events`).

Who sent a mail (the ``type`` filter): ``sent_from_crm`` is mail the CRM sent, the only mail whose bounces
block an address. ``user_emails`` is mail synced from a user's own mailbox: received mail (``sent: false``,
from the contact) and, with ``sent_by_user``, mail the user sent from that mailbox (``sent: true``, to the
contact, a ``sent`` status but never a bounce the CRM saw). A client that ignores the difference takes a
user's later mail as the address's latest status. ``drafts`` and ``scheduled_in_crm`` are not sent
(``sent: false``). Without ``type`` the list holds the user's emails and the CRM's (Zoho's docs)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .models import JSON, EmulatorConfig, Module, OrgState, Record, Reply, Request, ZohoError, error, iso
from .routing import route

if TYPE_CHECKING:
    from .backend import EmulatorBackend

PER_PAGE = 10
RETENTION_DAYS = 100
RETENTION_SECONDS = RETENTION_DAYS * 86_400
TEMPORARY = "Temporarily blocked"
PERMANENT = "Permanently blocked"
#: The ``type`` values the OAS enumerates.
EMAIL_TYPES = frozenset(
    {
        "all_contacts_draft_crm_emails",
        "all_contacts_scheduled_crm_emails",
        "all_contacts_sent_crm_emails",
        "sent_from_crm",
        "scheduled_in_crm",
        "drafts",
        "user_emails",
    }
)
#: Modules without an Emails related list (Zoho's docs list Leads, Accounts, Contacts, Deals, Quotes,
#: Invoices,
#: Sales Orders, Purchase Orders and custom modules).
NO_EMAILS_MODULES = frozenset({"Cases", "Products", "Tasks", "Campaigns"})
#: Scopes that grant the emails half of the requirement.
EMAILS_SCOPES = ("ZohoCRM.modules.emails.READ", "ZohoCRM.modules.emails.ALL", "ZohoCRM.modules.ALL")
OWNER = {"name": "Emulated Admin", "id": "4876876000000225013"}
OWNER_EMAIL = "admin@example.com"
#: Status keys holding times (epoch seconds in the model, ISO-8601 on the wire).
_TIME_KEYS = ("bounced_time", "first_open", "last_open")
_DAY = 86_400.0
_HOUR = 3_600.0

Order = Literal["newest_first", "oldest_first"]


# ------------------------------------------------------------------------------------------ status entries


def sent() -> JSON:
    """A ``sent`` status entry."""
    return {"type": "sent"}


def delivered() -> JSON:
    """A ``delivered`` status entry (the word is assumed: Zoho's UI shows "Delivered")."""
    return {"type": "delivered"}


def opened(at: float, count: int = 1, last: float | None = None) -> JSON:
    """An ``opened`` status entry."""
    return {
        "type": "opened",
        "first_open": at,
        "last_open": at if last is None else last,
        "count": str(count),
    }


def bounced(
    at: float,
    *,
    permanent: bool = False,
    category: str | None = None,
    sub_category: str | None = None,
    reason: str | None = None,
) -> JSON:
    """A ``bounced`` status entry; soft ("Temporarily blocked") unless ``permanent`` or ``category`` says
    else."""
    if permanent:
        default_sub, default_reason = "Invalid Email Address", "Mailbox does not exist."
    else:
        default_sub, default_reason = "Temporary Domain Failure", "Retries Exhausted. Host not reachable."
    return {
        "type": "bounced",
        "category": category or (PERMANENT if permanent else TEMPORARY),
        "sub_category": sub_category or default_sub,
        "bounced_reason": reason or default_reason,
        "bounced_time": at,
    }


# ------------------------------------------------------------------------------------------ model


@dataclass(slots=True)
class Email:
    """One email of a record's Emails related list. Times are epoch seconds."""

    message_id: str
    sent_at: float
    to: str
    subject: str
    status: list[JSON] = field(default_factory=list)
    #: ``sent_from_crm`` (sent by CRM), ``user_emails`` (synced from a mailbox, e.g. a reply from the
    #: contact: ``sent`` is false), ``scheduled_in_crm`` or ``drafts``.
    source: str = "sent_from_crm"
    extra: JSON = field(default_factory=dict)
    #: For ``user_emails``: the user sent it from their own mailbox (``sent: true``, to the contact); the CRM
    #: did not send it, so it neither bounces in the CRM nor says anything about the address's block.
    sent_by_user: bool = False

    @property
    def outgoing(self) -> bool:
        """Whether it goes from the org to the contact (everything but received mail)."""
        return not (self.source == "user_emails" and not self.sent_by_user)

    @property
    def was_sent(self) -> bool:
        """Whether it left a mailbox: sent by the CRM, or by a user from their own mailbox (not a draft or a
        scheduled email)."""
        return self.source == "sent_from_crm" or (self.source == "user_emails" and self.sent_by_user)

    @property
    def from_crm(self) -> bool:
        """Whether the CRM sent it: the only mail whose bounces block the address."""
        return self.source == "sent_from_crm"

    def latest_bounce(self) -> JSON | None:
        """The bounce entry of this email, if it bounced."""
        return next((s for s in self.status if s.get("type") == "bounced"), None)

    def recipients(self) -> list[str]:
        """The addresses in ``to`` (several when one mail went to more than one of the record's addresses)."""
        return [part.strip() for part in self.to.split(",") if part.strip()]

    def to_json(
        self,
        module: str,
        module_id: str,
        record_id: str,
        record_name: str | None,
        to_shape: str = "objects",
    ) -> JSON:
        """The email as Zoho's list shows it (every field the OAS marks required, and a few more).
        ``to_shape``: see ``EmulatorConfig.emails_to_shape``."""
        status = []
        for entry in self.status:
            item: JSON = {"bounced_time": None, "bounced_reason": None, **entry}
            for key in _TIME_KEYS:
                value = item.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    item[key] = iso(float(value))
            status.append(item)
        owner_user = {"user_name": OWNER["name"], "email": OWNER_EMAIL}
        contact_user = {"user_name": record_name, "email": self.to}
        out = self.outgoing
        body: JSON = {
            "cc": [],
            "summary": None,
            "owner": dict(OWNER),
            "read": any(s.get("type") == "opened" for s in self.status) if out else True,
            "sent": self.was_sent,
            "subject": self.subject,
            "activity_info": None,
            "intent": None,
            "sentiment_info": None,
            "message_id": self.message_id,
            "source": "imap" if self.source == "user_emails" else "crm_email",
            "linked_record": {
                "id": record_id,
                "name": record_name,
                "module": {"api_name": module, "id": module_id},
            },
            "emotion": None,
            "from": owner_user if out else contact_user,
            "to": _to_field(self.recipients(), record_name, to_shape) if out else [owner_user],
            "time": iso(self.sent_at),
            "sent_time": iso(self.sent_at),
            "status": status,
            "has_attachment": False,
            "has_thread_attachment": False,
            "thread_id": self.message_id[:32],
            "editable": False,
            "mail_format": "html",
            "reply_to": owner_user if out else contact_user,
            "attachments": [],
        }
        body.update(self.extra)
        return body


def _to_field(addresses: list[str], name: str | None, shape: str) -> Any:
    """An outgoing mail's ``to`` in the configured shape (one entry per recipient)."""
    label = name or "Contact"
    if shape == "text":
        return ", ".join(f"{label} <{a}>" for a in addresses)
    if shape == "object_text":
        return [{"email": f"{label} <{a}>"} for a in addresses]
    return [{"user_name": name, "email": a} for a in addresses]


def message_id(module: str, record_id: str, n: int) -> str:
    """Deterministic 64-hex message id (Zoho's look like this)."""
    return hashlib.sha256(f"{module}:{record_id}:{n}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class FieldState:
    """What :func:`derived_history` needs of one email field (mirrors the backend's ``EmailState``)."""

    address: str | None
    blocked: str | None
    unblock_count: int
    #: Unblocks of this field done through the emulator's API (None: use the record-level count).
    api_unblocks: int | None = None


def derived_history(
    module: str,
    record_id: str,
    fields: Sequence[FieldState],
    api_unblocks: int,
    anchor: float,
) -> list[Email]:
    """A plausible history that agrees with the block state, for records seeded without explicit emails.

    Per field with an address (each field's mails go ``to`` its own address and follow its own state; a
    field's ``api_unblocks``, when known, counts only that field's unblocks): two delivered emails (30 and 20 days before ``anchor``), one older soft
    bounce per unblock done before the emulator's API saw the record, then: blocked temporary → a soft bounce
    3 days before ``anchor`` as the latest email; permanent → a hard bounce 3 days before; not blocked but
    unblocked before (``unblock_count`` > API unblocks) → a delivered email after the bounce (the address
    works again); not blocked because the API unblocked it → the bounce stays latest. A field whose state is
    clean and which has no address has no emails (204).
    """
    emails: list[Email] = []
    n = 0

    def add(at: float, to: str, status: list[JSON], subject: str) -> None:
        nonlocal n
        emails.append(Email(message_id(module, record_id, n), at, to, subject, status))
        n += 1

    for offset, st in enumerate(fields):
        trivial = st.blocked is None and st.unblock_count == 0
        if st.address is None and trivial:
            continue
        to = st.address or f"record{record_id}.{offset}@example.com"
        shift = offset * _HOUR  # keep the fields' emails apart in time, primary latest
        base = anchor - shift
        add(base - 30 * _DAY, to, [sent(), delivered(), opened(base - 30 * _DAY + _HOUR)], "Welcome")
        add(base - 20 * _DAY, to, [sent(), delivered()], "Product update")
        done_by_api = api_unblocks if st.api_unblocks is None else st.api_unblocks
        seeded_unblocks = max(0, st.unblock_count - done_by_api)
        api_unblocked = st.unblock_count > seeded_unblocks
        for i in range(seeded_unblocks):
            at = base - (15 - i * 10 / seeded_unblocks) * _DAY  # between 15 and 5 days before
            add(at, to, [sent(), bounced(at + 60)], f"Follow-up {i + 1}")
            add(at + 12 * _HOUR, to, [sent(), delivered()], f"Follow-up {i + 1} (resent)")
        if st.blocked == "temporary" or api_unblocked:
            at = base - 3 * _DAY
            add(at, to, [sent(), bounced(at + 60)], "Your quote")
        elif st.blocked == "permanent":
            at = base - 3 * _DAY
            add(at, to, [sent(), bounced(at + 60, permanent=True)], "Your quote")
        elif seeded_unblocks:
            at = base - 2 * _DAY
            add(at, to, [sent(), delivered(), opened(at + _HOUR)], "Your quote")
    return emails


@dataclass(frozen=True, slots=True)
class _Cursor:
    module: str
    record_id: str
    start: int


class EmailStore:
    """Explicit email histories, cursors and the order; the backend's lock guards every call."""

    def __init__(self, anchor: float) -> None:
        #: Derived histories are dated relative to this moment (the org's creation).
        self.anchor = anchor
        self.order: Order = "newest_first"
        self._explicit: dict[tuple[str, str], list[Email]] = {}
        self._cursors: dict[str, _Cursor] = {}

    def add(self, module: str, record_id: str, email: Email) -> Email:
        """Append an email to a record's explicit history (from then on nothing is derived for it)."""
        self._explicit.setdefault((module, record_id), []).append(email)
        return email

    def set_none(self, module: str, record_id: str) -> None:
        """Mark a record as having no emails at all (even if its block state would derive some)."""
        self._explicit[(module, record_id)] = []

    def explicit(self, module: str, record_id: str) -> list[Email] | None:
        """The explicit history, or None when the record's history is derived."""
        return self._explicit.get((module, record_id))

    def next_number(self, module: str, record_id: str) -> int:
        """How many explicit emails a record has (for deterministic message ids)."""
        return len(self._explicit.get((module, record_id), []))

    def visible(self, history: Iterable[Email], now: float, type_: str | None = None) -> list[Email]:
        """Emails a list call shows now: inside the retention window, not in the future, of the requested
        ``type``, in :attr:`order`."""
        cutoff = now - RETENTION_SECONDS
        kept = [e for e in history if cutoff <= e.sent_at <= now and _matches_type(e, type_)]
        kept.sort(key=lambda e: (e.sent_at, e.message_id), reverse=self.order == "newest_first")
        return kept

    def issue_cursor(self, module: str, record_id: str, start: int) -> str:
        """An opaque index for the page starting at ``start`` (not a number a client could compute)."""
        token = secrets.token_hex(16)
        self._cursors[token] = _Cursor(module, record_id, start)
        return token

    def cursor(self, token: str, module: str, record_id: str) -> _Cursor | None:
        """The cursor behind an index, if it was issued for this record."""
        cur = self._cursors.get(token)
        if cur is None or cur.module != module or cur.record_id != record_id:
            return None
        return cur

    def page(
        self,
        module: str,
        record_id: str,
        emails: list[Email],
        index: str | None,
    ) -> tuple[list[Email], JSON] | None:
        """Slice one page of ``emails`` (already :meth:`visible`); None when ``index`` is not ours.

        Returns ``([], info)`` when the page is empty (the caller answers 204).
        """
        start = 0
        if index:
            cur = self.cursor(index, module, record_id)
            if cur is None:
                return None
            start = cur.start
        rows = emails[start : start + PER_PAGE]
        more = start + PER_PAGE < len(emails)
        next_index = self.issue_cursor(module, record_id, start + PER_PAGE) if more else None
        prev = self.issue_cursor(module, record_id, max(0, start - PER_PAGE)) if start > 0 else None
        info: JSON = {
            "count": len(rows),
            "next_index": next_index,
            "prev_index": prev,
            "per_page": PER_PAGE,
            "more_records": more,
        }
        return rows, info


def _matches_type(email: Email, type_: str | None) -> bool:
    if type_ is None:
        return email.source in ("sent_from_crm", "user_emails")
    if type_.startswith("all_contacts_"):
        return False  # Accounts only; contacts' emails are not linked to accounts in the emulator
    return email.source == type_


def field_states(fields: Mapping[str, Any], email: Mapping[str, Any]) -> list[FieldState]:
    """:class:`FieldState` per email field (``email`` maps field name → the backend's ``EmailState``)."""
    out = []
    for name in ("Email", "Secondary_Email"):
        st = email.get(name)
        if st is None:
            continue
        raw = fields.get(name)
        address = raw if isinstance(raw, str) and raw else None
        out.append(FieldState(address, st.blocked, st.unblock_count, len(st.unblocked_at)))
    return out


# ------------------------------------------------------------------------------------------ the service


class EmailsService(OrgState):
    """Backend mixin: every record's Emails list and ``GET /crm/{v}/{module}/{id}/Emails``."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        super().__init__(config)
        #: Histories, cursors and the list order (``email_store.order = "oldest_first"`` flips it).
        self.email_store = EmailStore(anchor=self.now())
        #: Emails lists read per (module, record id): first pages served, for tests of who read what.
        self._email_list_reads: dict[tuple[str, str], int] = {}

    def email_list_reads(self, *, clear: bool = False) -> dict[tuple[str, str], int]:
        """How often each record's Emails list was read (its first page served) since the last ``clear``."""
        with self._lock:
            out = dict(self._email_list_reads)
            if clear:
                self._email_list_reads.clear()
            return out

    def add_email(
        self,
        module: str,
        record_id: str,
        *,
        sent_at: float,
        status: list[JSON],
        subject: str = "Hello from CRM",
        to: str | Sequence[str] | None = None,
        source: str = "sent_from_crm",
        sent_by_user: bool = False,
        **extra: Any,
    ) -> str:
        """Add an email to a record's Emails list (its history is explicit from then on); returns its id.

        ``status`` entries use epoch seconds for ``bounced_time``/``first_open``/``last_open`` (see
        :func:`bounced`, :func:`opened`, :func:`delivered`, :func:`sent`). ``to`` names the recipient (default:
        the record's Email; a list: one mail to several addresses); ``source="user_emails", sent_by_user=True`` is mail a user sent from their own
        mailbox (not from the CRM).
        """
        if sent_by_user and source != "user_emails":
            raise ValueError("sent_by_user describes user_emails (mail from a user's own mailbox)")
        with self._lock:
            rec = self._require_record(module, record_id)
            name = self._require_module(module).name
            if to is not None and not isinstance(to, str):
                to = ", ".join(to)
            address = to or _address(rec.fields) or f"record{record_id}@example.com"
            n = self.email_store.next_number(name, record_id)
            mail = Email(
                message_id(name, record_id, n),
                sent_at,
                address,
                subject,
                list(status),
                source,
                extra,
                sent_by_user,
            )
            return self.email_store.add(name, record_id, mail).message_id

    def set_no_emails(self, module: str, record_id: str) -> None:
        """Give a record an empty Emails list (204), whatever its block state would derive."""
        with self._lock:
            self._require_record(module, record_id)
            self.email_store.set_none(self._require_module(module).name, record_id)

    def field_unblock_events(self, module: str, record_id: str) -> dict[str, list[float]]:
        """Per email field, the times the API unblocked it (a field an unblock call did not reach, or did
        not need, has none): shows which fields each call really unblocked."""
        with self._lock:
            rec = self._require_record(module, record_id)
            return {name: list(st.unblocked_at) for name, st in rec.email.items()}

    def email_history(self, module: str, record_id: str) -> list[Email]:
        """Every email of a record, explicit or derived, ignoring retention (oldest first)."""
        with self._lock:
            mod = self._require_module(module)
            rec = self._require_record(module, record_id)
            return sorted(self._history(mod, rec), key=lambda e: (e.sent_at, e.message_id))

    def _history(self, mod: Module, rec: Record) -> list[Email]:
        explicit = self.email_store.explicit(mod.name, rec.id)
        if explicit is not None:
            return list(explicit)
        states = field_states(rec.fields, rec.email)
        return derived_history(mod.name, rec.id, states, len(rec.unblock_events), self.email_store.anchor)

    def list_emails(self, req: Request) -> Reply:
        """``GET /crm/{v}/{module}/{id}/Emails`` (see the module docstring for the rules)."""
        mod = self.module_or_400_emails(req.params["module"])
        token = req.access_token
        self.check_scope(
            token,
            f"ZohoCRM.modules.{mod.name}.READ",
            f"ZohoCRM.modules.{mod.name}.ALL",
            "ZohoCRM.modules.READ",
            "ZohoCRM.modules.ALL",
        )
        self.check_scope(token, *EMAILS_SCOPES)
        self.charge()
        query = req.query
        type_ = query.get("type") or None
        if type_ is not None and type_ not in EMAIL_TYPES:
            raise ZohoError(400, error("INVALID_DATA", "invalid data", {"param_name": "type"}))
        owner = query.get("owner_id")
        if owner not in (None, "") and not str(owner).isdigit():
            raise ZohoError(400, error("INVALID_DATA", "invalid data", {"param_name": "owner_id"}))
        rid = req.params["id"]
        rec = mod.records.get(rid) if rid.isdigit() else None
        if rec is None:
            raise ZohoError(
                400,
                error("INVALID_DATA", "the related id given seems to be invalid", {"resource_path_index": 1}),
            )
        visible = self.email_store.visible(self._history(mod, rec), self.now(), type_)
        paged = self.email_store.page(mod.name, rid, visible, query.get("index") or None)
        if paged is None:
            raise ZohoError(400, error("INVALID_DATA", "invalid data", {"param_name": "index"}))
        rows, info = paged
        if not query.get("index"):
            key = (mod.name, rid)
            self._email_list_reads[key] = self._email_list_reads.get(key, 0) + 1
        if not rows:
            return Reply(204)
        name = rec.fields.get("Full_Name") or rec.fields.get("Last_Name")
        module_id = str(MODULE_ID_BASE + mod.index)
        shape = self.config.emails_to_shape
        data = [
            e.to_json(mod.name, module_id, rid, name if isinstance(name, str) else None, shape) for e in rows
        ]
        return Reply.json(200, {"Emails": data, "info": info})

    def module_or_400_emails(self, name: str) -> Module:
        """The module, or 400 INVALID_MODULE when it is unknown or has no Emails related list."""
        mod = self.module(name)
        if mod is None or mod.name in NO_EMAILS_MODULES:
            raise ZohoError(
                400,
                error(
                    "INVALID_MODULE", "the module name given seems to be invalid", {"resource_path_index": 0}
                ),
            )
        return mod


MODULE_ID_BASE = 4_876_876_000_000_002_175


def _address(fields: Mapping[str, Any]) -> str | None:
    raw = fields.get("Email")
    return raw if isinstance(raw, str) and raw else None


@route("emails", "/crm/{ver}/{module}/{id}/Emails")
def emails(backend: EmulatorBackend, req: Request) -> Reply:
    """``GET /crm/{v}/{module}/{record_id}/Emails``: 10 per page, ``index`` paging, 204 when none."""
    return backend.list_emails(req)
