"""Deterministic demo datasets: every bounce state Zoho has, at any size (100,000 records in ~1 s)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .backend import ID_BASE, EmailState, EmulatorBackend, Record
from .emails import bounced, delivered, opened, sent

#: cvid of the "Bounced leads" custom view (every Lead with any blocked email field).
BOUNCED_VIEW_ID = "6000000031001"
#: cvid of the "Bounced contacts" custom view.
CONTACTS_BOUNCED_VIEW_ID = "6000000031003"
#: Custom field an org maintains itself; usable in COQL (``where Email_Bounce_Status = 'Temporary'``).
BOUNCE_STATUS_FIELD = "Email_Bounce_Status"

_DAY = 86_400.0
_HOUR = 3_600.0

#: Record kinds and their share of the bounced records.
BOUNCED_MIX: dict[str, float] = {
    "temporary": 0.60,  # Email soft-bounced, unblockable
    "permanent": 0.15,  # Email hard-bounced
    "limit": 0.10,  # soft-bounced but already unblocked 5 times
    "locked": 0.05,  # soft-bounced, record in an approval process
    "secondary": 0.05,  # only Secondary_Email soft-bounced
    "permanent_secondary": 0.05,  # Email hard-bounced, Secondary_Email soft-bounced
}
KINDS = (*BOUNCED_MIX, "clean")

_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Lee")
_DOMAINS = ("example.com", "example.org", "example.net")


@dataclass
class SeedResult:
    """Ids created per module and kind, so tests can pick records by expected behaviour."""

    ids: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: Per module: the ``temporary`` records given a fresh (3 h old) bounce in their Emails list.
    recent_ids: dict[str, list[str]] = field(default_factory=dict)

    def of(self, kind: str, module: str = "Leads") -> list[str]:
        """Ids of one kind (``temporary``, ``permanent``, ``limit``, ``locked``, ``secondary``,
        ``permanent_secondary``, ``clean``) in a module."""
        return self.ids.get(module, {}).get(kind, [])

    def bounced(self, module: str = "Leads") -> list[str]:
        """Every id the module's bounced view lists at seed time, in id order."""
        return sorted((i for k in BOUNCED_MIX for i in self.of(k, module)), key=int)

    def recent(self, module: str = "Leads") -> list[str]:
        """``temporary`` ids whose bounce is 3 h old (``deferred`` under ``min_hours_since_bounce=24``)."""
        return self.recent_ids.get(module, [])


def _kind_counts(n_bounced: int, n_clean: int) -> list[str]:
    """Exact per-kind counts (largest remainder), so small seeds still contain every kind."""
    counts = {k: int(n_bounced * share) for k, share in BOUNCED_MIX.items()}
    if n_bounced >= len(BOUNCED_MIX):
        for k in counts:
            counts[k] = max(counts[k], 1)
    order = sorted(BOUNCED_MIX, key=lambda k: -BOUNCED_MIX[k])
    i = 0
    while sum(counts.values()) < n_bounced:
        counts[order[i % len(order)]] += 1
        i += 1
    while sum(counts.values()) > n_bounced:
        k = max(counts, key=lambda key: counts[key])
        counts[k] -= 1
    return [k for k, n in counts.items() for _ in range(n)] + ["clean"] * n_clean


def _state(kind: str) -> tuple[EmailState, EmailState, bool, str | None]:
    """(Email state, Secondary_Email state, locked, Email_Bounce_Status) for a kind."""
    if kind == "temporary":
        return EmailState("temporary", 0), EmailState(), False, "Temporary"
    if kind == "permanent":
        return EmailState("permanent", 0), EmailState(), False, "Permanent"
    if kind == "limit":
        return EmailState("temporary", 5), EmailState(), False, "Temporary"
    if kind == "locked":
        return EmailState("temporary", 1), EmailState(), True, "Temporary"
    if kind == "secondary":
        return EmailState(), EmailState("temporary", 0), False, "Temporary"
    if kind == "permanent_secondary":
        return EmailState("permanent", 0), EmailState("temporary", 2), False, "Permanent"
    return EmailState(None, 1), EmailState(), False, None  # clean: bounced once, already unblocked


def seed_module(
    backend: EmulatorBackend,
    module: str,
    n_bounced: int,
    n_clean: int = 0,
    seed: int = 0,
    start: int = 100_001,
) -> dict[str, list[str]]:
    """Add ``n_bounced`` bounced records (mixed kinds, shuffled) and ``n_clean`` clean ones to a module."""
    mod = backend.module(module)
    if mod is None:
        raise KeyError(f"unknown module {module!r}")
    rng = random.Random(f"{seed}:{module}")
    kinds = _kind_counts(n_bounced, n_clean)
    rng.shuffle(kinds)
    base = ID_BASE + mod.index * 1_000_000 + start
    out: dict[str, list[str]] = {k: [] for k in KINDS}
    records: list[Record] = []
    prefix = module.lower()
    for n, kind in enumerate(kinds):
        rid = str(base + n)
        primary, secondary, locked, status = _state(kind)
        first, last = _FIRST[n % len(_FIRST)], _LAST[(n // len(_FIRST)) % len(_LAST)]
        fields: dict[str, object] = {
            "First_Name": first,
            "Last_Name": last,
            "Full_Name": f"{first} {last}",
            "Email": f"{first.lower()}.{last.lower()}.{n}@{_DOMAINS[n % 3]}" if mod.has_email else None,
            "Company": f"Company {n % 97}",
            BOUNCE_STATUS_FIELD: status,
        }
        email = {"Email": primary} if mod.has_email else {}
        if mod.has_secondary_email:
            fields["Secondary_Email"] = f"{prefix}{n}@alt.example.com"
            email["Secondary_Email"] = secondary
        records.append(Record(rid, fields, email, locked))
        out[kind].append(rid)
    backend.add_records(mod.name, records)
    backend.add_field(
        mod.name,
        BOUNCE_STATUS_FIELD,
        "picklist",
        field_label="Email Bounce Status",
        pick_list_values=["Temporary", "Permanent"],
    )
    return out


def _is_bounced(rec: Record) -> bool:
    """View criterion: any email field blocked, whatever the kind (Zoho's bounce-status filter)."""
    return rec.bounced


def seed_demo_org(
    backend: EmulatorBackend,
    n_bounced: int = 60,
    n_clean: int | None = None,
    n_contacts_bounced: int | None = None,
    seed: int = 42,
    recent_every: int = 10,
) -> SeedResult:
    """A realistic org: bounced + clean Leads and Contacts with Emails lists, and the two bounced views.

    Defaults: ``n_clean = max(5, n_bounced // 10)``; ``n_contacts_bounced = max(6, n_bounced // 10)``.
    Every record's Emails list agrees with its block state (derived, see ``emails.derived_history``); in each
    module every ``recent_every``-th ``temporary`` record (at least one where there are two; 0: none) bounced
    only 3 hours ago instead (:meth:`SeedResult.recent`), so that ``verify="emails"`` with
    ``min_hours_since_bounce=24`` defers it.
    """
    clean = max(5, n_bounced // 10) if n_clean is None else n_clean
    contacts = max(6, n_bounced // 10) if n_contacts_bounced is None else n_contacts_bounced
    result = SeedResult()
    result.ids["Leads"] = seed_module(backend, "Leads", n_bounced, clean, seed)
    result.ids["Contacts"] = seed_module(backend, "Contacts", contacts, max(2, contacts // 5), seed)
    if recent_every > 0:
        now = backend.now()
        for module, kinds in result.ids.items():
            temporary = sorted(kinds["temporary"], key=int)
            recent = temporary[recent_every - 1 :: recent_every] or temporary[1:2]
            for rid in recent:
                address = backend.record(module, rid)["fields"].get("Email") or f"{rid}@example.com"
                backend.add_email(
                    module, rid, sent_at=now - 20 * _DAY, status=[sent(), delivered()], to=address
                )
                backend.add_email(
                    module,
                    rid,
                    sent_at=now - 3 * _HOUR - 60,
                    status=[sent(), bounced(now - 3 * _HOUR)],
                    to=address,
                )
            result.recent_ids[module] = recent
    backend.add_view("Leads", BOUNCED_VIEW_ID, "Bounced leads", criteria=_is_bounced)
    backend.add_view("Contacts", CONTACTS_BOUNCED_VIEW_ID, "Bounced contacts", criteria=_is_bounced)
    return result


def expected_outcome(
    backend: EmulatorBackend, module: str, record_id: str, fields: Iterable[str] = ("Email",)
) -> str:
    """What unblocking this record would answer now: ``unblocked``, ``already_unblocked``,
    ``permanently_blocked``, ``limit_reached``, ``invalid_record`` or ``not_allowed``
    (locked / no such field)."""
    outcome = backend.predict_unblock(module, record_id, fields)
    return "not_allowed" if outcome in ("locked", "field_not_available") else outcome


# -------------------------------------------------------------------------------------------- email histories

#: Kinds :func:`seed_email_org` creates, each a record whose Emails list and block state agree.
EMAIL_KINDS = (
    "never_bounced",  # delivered and opened mail only
    "recent_soft",  # soft bounce 2 h ago, temporarily blocked
    "old_soft",  # soft bounce 10 days ago, temporarily blocked
    "soft_unblocked_since",  # soft bounce 20 days ago, unblocked, delivered 5 days ago
    "hard",  # hard bounce 7 days ago, permanently blocked
    "deep_soft",  # 14 emails: latest (page 1) a soft bounce 3 days ago, two older soft bounces on page 2
    "buried_soft",  # soft bounce 6 days ago behind 12 newer *received* emails: the bounce is on page 2
    "limit",  # soft bounce 4 days ago after 5 earlier bounce/unblock rounds: unblock limit reached
    "no_emails",  # an address but no email at all: the list answers 204
    "expired",  # soft bounce 120 days ago, still blocked: beyond Zoho's 100-day retention, the list is empty
    "unknown_category",  # soft bounce 5 days ago with a category no client knows ("Quarantined")
)
#: Outcome each kind must end in, per verify mode: ``"none"`` (today's unblock answers), ``"emails"`` (with
#: ``min_hours_since_bounce=24``) and ``"sweep"`` (every candidate sent to unblock; "already unblocked" means
#: ``not_blocked``). ``expired`` shows what verify="emails" cannot see: Zoho no longer lists the bounce.
EMAIL_EXPECTED: dict[str, dict[str, str]] = {
    "never_bounced": {"none": "already_unblocked", "emails": "not_blocked", "sweep": "not_blocked"},
    "recent_soft": {"none": "unblocked", "emails": "deferred", "sweep": "unblocked"},
    "old_soft": {"none": "unblocked", "emails": "unblocked", "sweep": "unblocked"},
    "soft_unblocked_since": {"none": "already_unblocked", "emails": "not_blocked", "sweep": "not_blocked"},
    "hard": {"none": "permanently_blocked", "emails": "permanently_blocked", "sweep": "permanently_blocked"},
    "deep_soft": {"none": "unblocked", "emails": "unblocked", "sweep": "unblocked"},
    "buried_soft": {"none": "unblocked", "emails": "unblocked", "sweep": "unblocked"},
    "limit": {"none": "limit_reached", "emails": "limit_reached", "sweep": "limit_reached"},
    "no_emails": {"none": "already_unblocked", "emails": "not_blocked", "sweep": "not_blocked"},
    "expired": {"none": "unblocked", "emails": "not_blocked", "sweep": "unblocked"},
    "unknown_category": {"none": "unblocked", "emails": "unblocked", "sweep": "unblocked"},
}
UNKNOWN_CATEGORY = "Quarantined"

#: (sent_at offset before now in seconds, status list, subject, source) of one seeded email.
_Mail = tuple[float, list[dict[str, object]], str, str]


@dataclass
class Seeded:
    """Ids created by :func:`seed_email_org`, per kind, with the outcome each must end in."""

    module: str
    ids: dict[str, list[str]] = field(default_factory=dict)

    def of(self, kind: str) -> list[str]:
        """Ids of one kind (see :data:`EMAIL_KINDS`)."""
        if kind not in EMAIL_EXPECTED:
            raise KeyError(f"unknown kind {kind!r}; expected one of {EMAIL_KINDS}")
        return self.ids.get(kind, [])

    def all_ids(self) -> list[str]:
        """Every seeded id, in id order."""
        return sorted((i for ids in self.ids.values() for i in ids), key=int)

    def expected_outcomes(self, mode: str = "emails") -> dict[str, str]:
        """``{id: outcome}`` under a verify mode (``none``, ``emails`` with 24 h policy, ``sweep``)."""
        if mode not in ("none", "emails", "sweep"):
            raise ValueError(f"unknown verify mode {mode!r}")
        return {rid: EMAIL_EXPECTED[kind][mode] for kind, ids in self.ids.items() for rid in ids}


def _received(at: float, n: int) -> _Mail:
    return (at, [], f"Re: your quote ({n})", "user_emails")


def _history(kind: str, now: float) -> tuple[str | None, int, list[_Mail]]:
    """(blocked, unblock_count, emails as offsets before ``now``) of one kind."""
    d, h = _DAY, _HOUR

    def soft(
        age: float, subject: str = "Your quote", category: str | None = None, sub: str | None = None
    ) -> _Mail:
        status = [sent(), bounced(now - age + 60, category=category, sub_category=sub)]
        return (age, status, subject, "sent_from_crm")

    def ok(age: float, subject: str = "Newsletter", read: bool = False) -> _Mail:
        status = [sent(), delivered()] + ([opened(now - age + h)] if read else [])
        return (age, status, subject, "sent_from_crm")

    if kind == "never_bounced":
        return None, 0, [ok(25 * d, "Welcome", read=True), ok(12 * d), ok(1 * d, "Your quote", read=True)]
    if kind == "recent_soft":
        return "temporary", 0, [ok(20 * d), soft(2 * h + 60)]
    if kind == "old_soft":
        return "temporary", 0, [ok(40 * d), soft(10 * d)]
    if kind == "soft_unblocked_since":
        return None, 1, [ok(30 * d), soft(20 * d), ok(5 * d, "Your quote", read=True)]
    if kind == "hard":
        hard = (7 * d, [sent(), bounced(now - 7 * d + 60, permanent=True)], "Your quote", "sent_from_crm")
        return "permanent", 0, [ok(15 * d), hard]
    if kind == "deep_soft":
        mails = [ok(55 * d), soft(50 * d, "Offer"), ok(45 * d), soft(40 * d, "Offer")]
        mails += [ok(age * d, read=age % 2 == 0) for age in (29, 26, 23, 20, 17, 14, 11, 8, 5)]
        return "temporary", 2, [*mails, soft(3 * d)]
    if kind == "buried_soft":
        mails = [ok(20 * d), soft(6 * d)]
        return "temporary", 0, mails + [_received((5.5 - i * 0.4) * d, i + 1) for i in range(12)]
    if kind == "limit":
        mails = []
        for age in (80, 70, 60, 50, 40):
            mails += [soft(age * d, "Offer"), ok((age - 3) * d)]
        return "temporary", 5, [*mails, soft(4 * d)]
    if kind == "no_emails":
        return None, 0, []
    if kind == "expired":
        return "temporary", 0, [ok(130 * d), soft(120 * d)]
    if kind == "unknown_category":
        return (
            "temporary",
            0,
            [ok(20 * d), soft(5 * d, category=UNKNOWN_CATEGORY, sub="Policy hold")],
        )
    raise KeyError(f"unknown kind {kind!r}; expected one of {EMAIL_KINDS}")


def seed_email_org(
    backend: EmulatorBackend,
    module: str = "Leads",
    counts: Mapping[str, int] | None = None,
    seed: int = 0,
) -> Seeded:
    """Add records of each kind (default: one of each in :data:`EMAIL_KINDS`) with explicit Emails lists.

    Times are relative to the emulator's clock now; advancing it ages every email (and past 100 days Zoho's
    retention hides them). Kinds are shuffled so a large seed interleaves them, as a real org would.
    """
    wanted = dict.fromkeys(EMAIL_KINDS, 1) if counts is None else dict(counts)
    for kind in wanted:
        if kind not in EMAIL_EXPECTED:
            raise KeyError(f"unknown kind {kind!r}; expected one of {EMAIL_KINDS}")
    order = [k for k, n in wanted.items() for _ in range(n)]
    random.Random(f"{seed}:{module}:emails").shuffle(order)
    mod = backend.module(module)
    if mod is None:
        raise KeyError(f"unknown module {module!r}")
    now = backend.now()
    result = Seeded(mod.name, {k: [] for k in wanted})
    for n, kind in enumerate(order):
        blocked, count, mails = _history(kind, now)
        first, last = _FIRST[n % len(_FIRST)], _LAST[(n // len(_FIRST)) % len(_LAST)]
        address = f"{first.lower()}.{last.lower()}.{kind}.{n}@{_DOMAINS[n % 3]}"
        rid = backend.add_record(
            mod.name,
            fields={"First_Name": first, "Last_Name": last, "Full_Name": f"{first} {last}", "Email": address},
            email_blocked=blocked,
            email_unblock_count=count,
        )
        if not mails:
            backend.set_no_emails(mod.name, rid)
        for age, status, subject, source in sorted(mails, key=lambda m: -m[0]):
            backend.add_email(
                mod.name, rid, sent_at=now - age, status=status, subject=subject, to=address, source=source
            )
        result.ids[kind].append(rid)
    return result


# -------------------------------------------------------------------------------------------- per-address cases
#
# Zoho blocks an address, not a record: each email field has its own history and its own block state. These
# seeds give each field's address a history of its own and write down, by hand, what each field must end in
# under ``verify="emails"`` with ``min_hours_since_bounce=ADDRESS_MIN_HOURS`` (the truth lives here, apart from
# the client code in ``zoho/``).

#: The ``min_hours_since_bounce`` the per-address expectations assume.
ADDRESS_MIN_HOURS = 24.0
_FIELDS = ("Email", "Secondary_Email")


@dataclass(frozen=True)
class FieldTruth:
    """What one field of one seeded record must end in.

    ``verdict``: what the latest mail the CRM sent to the field's current address says (``soft``, ``hard``,
    ``none`` or ``deferred`` when the soft bounce is younger than :data:`ADDRESS_MIN_HOURS`). ``outcome``: the
    field's outcome after a ``verify="emails"`` run (``unblocked``, ``deferred``, ``permanently_blocked``,
    ``not_blocked``). ``blocked_after``: the field's block state after that run."""

    verdict: str
    outcome: str
    blocked_after: str | None


_SOFT_OLD = FieldTruth("soft", "unblocked", None)
_SOFT_YOUNG = FieldTruth("deferred", "deferred", "temporary")
_HARD = FieldTruth("hard", "permanently_blocked", "permanent")
_CLEAN = FieldTruth("none", "not_blocked", None)


@dataclass(frozen=True)
class _Mail2:
    """One seeded mail: to a field's address (or a literal address), ages in hours before now."""

    to: str
    sent_hours: float
    kind: str  # "ok" | "soft" | "hard" | "user_sent" | "received"
    bounce_hours: float | None = None  # default: a minute after sending
    #: (sub_category, bounced_reason) of a soft bounce (default: Zoho's "Temporary Domain Failure")
    sub: tuple[str, str] | None = None


@dataclass(frozen=True)
class _FieldSpec:
    address: str | None
    blocked: str | None = None
    unblock_count: int = 0


@dataclass(frozen=True)
class AddressCaseSpec:
    """One hand-made case: both fields' addresses and states, the mails, the fields a run sends, the truth."""

    name: str
    about: str
    unblock_fields: tuple[str, ...]
    fields: dict[str, _FieldSpec]
    mails: tuple[_Mail2, ...]
    expected: dict[str, FieldTruth]
    #: The truth with ``check_domain`` on (a local DNS server serving :data:`~.dns_server.SEED_ZONE`, where
    #: ``*.nxdomain.example.net`` does not exist); None: the same as :attr:`expected`.
    with_check_domain: dict[str, FieldTruth] | None = None

    def expected_with_check_domain(self) -> dict[str, FieldTruth]:
        """Per field, the truth when ``check_domain`` is on."""
        return dict(self.expected if self.with_check_domain is None else self.with_check_domain)


def _case(
    name: str,
    about: str,
    unblock_fields: tuple[str, ...],
    fields: dict[str, _FieldSpec],
    mails: tuple[_Mail2, ...],
    expected: dict[str, FieldTruth],
    with_check_domain: dict[str, FieldTruth] | None = None,
) -> AddressCaseSpec:
    return AddressCaseSpec(name, about, unblock_fields, fields, mails, expected, with_check_domain)


def _mirror(case: AddressCaseSpec) -> AddressCaseSpec:
    """The same case with Email and Secondary_Email swapped."""
    swap = {"Email": "Secondary_Email", "Secondary_Email": "Email"}
    fields = {swap[f]: spec for f, spec in case.fields.items()}
    mails = tuple(
        _Mail2(swap.get(m.to, m.to), m.sent_hours, m.kind, m.bounce_hours, m.sub) for m in case.mails
    )
    domain = case.with_check_domain
    return AddressCaseSpec(
        f"{case.name}_mirror",
        f"{case.about} (mirror: Email and Secondary_Email swapped)",
        tuple(sorted((swap[f] for f in case.unblock_fields), key=_FIELDS.index)),
        fields,
        mails,
        {swap[f]: t for f, t in case.expected.items()},
        None if domain is None else {swap[f]: t for f, t in domain.items()},
    )


def _address_cases() -> list[AddressCaseSpec]:
    both = ("Email", "Secondary_Email")
    e, s = "Email", "Secondary_Email"
    base = [
        _case(
            "A",
            "Email soft-bounced 3 days ago; a mail to Secondary_Email was delivered yesterday",
            both,
            {e: _FieldSpec("a.primary@example.com", "temporary"), s: _FieldSpec("a.second@example.org")},
            (_Mail2(e, 20 * 24, "ok"), _Mail2(e, 72, "soft"), _Mail2(s, 24, "ok")),
            {e: _SOFT_OLD, s: _CLEAN},
        ),
        _case(
            "B",
            "Email soft-bounced 3 days ago; Secondary_Email hard-bounced yesterday; only Email is sent",
            (e,),
            {
                e: _FieldSpec("b.primary@example.com", "temporary"),
                s: _FieldSpec("b.second@example.org", "permanent"),
            },
            (_Mail2(e, 72, "soft"), _Mail2(s, 24, "hard")),
            {e: _SOFT_OLD},
        ),
        _case(
            "B_both",
            "Email soft-bounced 3 days ago; Secondary_Email hard-bounced yesterday; both fields sent",
            both,
            {
                e: _FieldSpec("bb.primary@example.com", "temporary"),
                s: _FieldSpec("bb.second@example.org", "permanent"),
            },
            (_Mail2(e, 72, "soft"), _Mail2(s, 24, "hard")),
            {e: _SOFT_OLD, s: _HARD},
        ),
        _case(
            "C",
            "Email bounced 2 days ago (the latest mail); Secondary_Email's mail of 3 days ago bounced only 2 h"
            " ago (retries exhausted): younger than the policy",
            both,
            {
                e: _FieldSpec("c.primary@example.com", "temporary"),
                s: _FieldSpec("c.second@example.org", "temporary"),
            },
            (_Mail2(s, 72, "soft", bounce_hours=2), _Mail2(e, 48, "soft")),
            {e: _SOFT_OLD, s: _SOFT_YOUNG},
        ),
        _case(
            "ages",
            "both fields soft-bounced: Email 30 h ago, Secondary_Email 20 h ago",
            both,
            {
                e: _FieldSpec("ages.primary@example.com", "temporary"),
                s: _FieldSpec("ages.second@example.org", "temporary", 1),
            },
            (_Mail2(e, 30, "soft"), _Mail2(s, 20, "soft")),
            {e: _SOFT_OLD, s: _SOFT_YOUNG},
        ),
        _case(
            "ages_both_old",
            "both fields soft-bounced long enough ago: Email 2 days, Secondary_Email 10 days",
            both,
            {
                e: _FieldSpec("old.primary@example.com", "temporary", 2),
                s: _FieldSpec("old.second@example.org", "temporary"),
            },
            (_Mail2(s, 240, "soft"), _Mail2(e, 48, "soft")),
            {e: _SOFT_OLD, s: _SOFT_OLD},
        ),
        _case(
            "no_address",
            "Email soft-bounced 3 days ago; Secondary_Email is empty (nothing to block)",
            both,
            {e: _FieldSpec("none.primary@example.com", "temporary"), s: _FieldSpec(None)},
            (_Mail2(e, 72, "soft"),),
            {e: _SOFT_OLD, s: _CLEAN},
        ),
        _case(
            "changed_address",
            "Email's old address soft-bounced 3 days ago; the record's Email changed since and the new address"
            " never bounced: the address now on the record decides",
            both,
            {
                e: _FieldSpec("changed.new@example.com"),
                s: _FieldSpec("changed.second@example.org", "temporary"),
            },
            (
                _Mail2("changed.old@example.net", 72, "soft"),
                _Mail2(s, 96, "soft"),
                _Mail2(e, 12, "ok"),
            ),
            {e: _CLEAN, s: _SOFT_OLD},
        ),
        _case(
            "changed_address_silent",
            "Email changed after its old address soft-bounced, and no mail went to the new address yet",
            (e,),
            {e: _FieldSpec("silent.new@example.com")},
            (_Mail2("silent.old@example.net", 72, "soft"),),
            {e: _CLEAN},
        ),
        _case(
            "user_mailbox",
            "Email soft-bounced 3 days ago (CRM); the user wrote to it from their own mailbox yesterday and the"
            " contact replied: neither is mail the CRM sent",
            (e,),
            {e: _FieldSpec("mailbox.primary@example.com", "temporary")},
            (_Mail2(e, 72, "soft"), _Mail2(e, 24, "user_sent"), _Mail2(e, 20, "received")),
            {e: _SOFT_OLD},
        ),
        _case(
            "case_insensitive",
            "the record's Email is written with capitals; Zoho's mail names it in lower case",
            (e,),
            {e: _FieldSpec("Grace.Hopper@Example.ORG", "temporary")},
            (_Mail2("grace.hopper@example.org", 72, "soft"),),
            {e: _SOFT_OLD},
        ),
    ]
    base += [
        _case(
            "dead_domain",
            "both fields soft-bounced 3 days ago with 'Temporary Domain Failure'; Email's domain does not exist"
            " (NXDOMAIN on the test's DNS server), Secondary_Email's has a mail host",
            both,
            {
                e: _FieldSpec("gone@nxdomain.example.net", "temporary"),
                s: _FieldSpec("dd.second@example.org", "temporary"),
            },
            (_Mail2(e, 72, "soft"), _Mail2(s, 70, "soft")),
            {e: _SOFT_OLD, s: _SOFT_OLD},
            with_check_domain={e: FieldTruth("deferred", "deferred", "temporary"), s: _SOFT_OLD},
        ),
        _case(
            "dead_domain_mailbox_full",
            "Email soft-bounced 3 days ago with 'Mailbox full' at a domain that does not exist: not a domain"
            " failure, so check_domain does not look it up",
            (e,),
            {e: _FieldSpec("full@nxdomain.example.net", "temporary")},
            (_Mail2(e, 72, "soft", sub=("Mailbox full", "552 5.2.2 Mailbox full")),),
            {e: _SOFT_OLD},
        ),
    ]
    mirrored = [
        _mirror(c) for c in base if c.name in ("A", "B", "B_both", "C", "ages", "no_address", "dead_domain")
    ]
    return base + mirrored


#: Every per-address case by name (see each case's ``about``).
ADDRESS_CASES: dict[str, AddressCaseSpec] = {c.name: c for c in _address_cases()}


@dataclass
class AddressSeeded:
    """Ids created by :func:`seed_address_cases` with each field's expected verdict and outcome."""

    module: str
    ids: dict[str, str] = field(default_factory=dict)  # case name -> record id

    def case(self, record_id: str) -> AddressCaseSpec:
        """The case a record was seeded as."""
        name = next(n for n, rid in self.ids.items() if rid == record_id)
        return ADDRESS_CASES[name]

    def expected(self, record_id: str) -> dict[str, FieldTruth]:
        """Per field the case sends, what it must end in."""
        return dict(self.case(record_id).expected)

    def by_fields(self) -> dict[tuple[str, ...], list[str]]:
        """Record ids grouped by the ``unblock_fields`` their case runs with."""
        out: dict[tuple[str, ...], list[str]] = {}
        for name, rid in self.ids.items():
            out.setdefault(ADDRESS_CASES[name].unblock_fields, []).append(rid)
        return out

    def expected_outcomes(self) -> dict[tuple[str, str], str]:
        """``{(record id, field): outcome}`` for every field every case sends."""
        return {
            (rid, f): truth.outcome
            for name, rid in self.ids.items()
            for f, truth in ADDRESS_CASES[name].expected.items()
        }


def _add_mail(backend: EmulatorBackend, module: str, rid: str, to: str, mail: _Mail2, now: float) -> None:
    at = now - mail.sent_hours * _HOUR
    bounce_at = now - mail.bounce_hours * _HOUR if mail.bounce_hours is not None else at + 60
    subject = f"Mail of {mail.sent_hours:g} h ago"
    if mail.kind == "ok":
        backend.add_email(module, rid, sent_at=at, status=[sent(), delivered()], subject=subject, to=to)
    elif mail.kind in ("soft", "hard"):
        reason = None if mail.bounce_hours is None else "Retries Exhausted. Host not reachable."
        sub = None
        if mail.sub is not None:
            sub, reason = mail.sub
        status = [
            sent(),
            bounced(bounce_at, permanent=mail.kind == "hard", sub_category=sub, reason=reason),
        ]
        backend.add_email(module, rid, sent_at=at, status=status, subject=subject, to=to)
    elif mail.kind == "user_sent":
        backend.add_email(
            module,
            rid,
            sent_at=at,
            status=[sent()],
            subject=subject,
            to=to,
            source="user_emails",
            sent_by_user=True,
        )
    elif mail.kind == "received":
        backend.add_email(
            module, rid, sent_at=at, status=[], subject=f"Re: {subject}", to=to, source="user_emails"
        )
    else:
        raise ValueError(f"unknown mail kind {mail.kind!r}")


def seed_address_cases(
    backend: EmulatorBackend, module: str = "Leads", names: Iterable[str] | None = None
) -> AddressSeeded:
    """One record per case of :data:`ADDRESS_CASES` (default: all) with both fields' states and explicit
    Emails lists (each mail ``to`` its field's address), times relative to the emulator's clock now."""
    mod = backend.module(module)
    if mod is None or not (mod.has_email and mod.has_secondary_email):
        raise KeyError(f"{module!r} is not a module with Email and Secondary_Email")
    now = backend.now()
    result = AddressSeeded(mod.name)
    for name in ADDRESS_CASES if names is None else names:
        case = ADDRESS_CASES[name]
        e = case.fields.get("Email", _FieldSpec(None))
        s = case.fields.get("Secondary_Email", _FieldSpec(None))
        rid = backend.add_record(
            mod.name,
            fields={
                "Last_Name": f"Case {name}",
                "Full_Name": f"Case {name}",
                "Email": e.address,
                "Secondary_Email": s.address,
            },
            email_blocked=e.blocked,
            email_unblock_count=e.unblock_count,
            secondary_blocked=s.blocked,
            secondary_unblock_count=s.unblock_count,
        )
        if not case.mails:
            backend.set_no_emails(mod.name, rid)
        for mail in sorted(case.mails, key=lambda m: -m.sent_hours):
            to = case.fields[mail.to].address if mail.to in _FIELDS else mail.to
            if to is None:
                raise ValueError(f"case {name}: a mail to {mail.to}, which has no address")
            _add_mail(backend, mod.name, rid, to, mail, now)
        result.ids[name] = rid
    return result


# -------------------------------------------------------------------------------------------- many addresses

#: Kinds of one field's history in :func:`seed_address_org`, each with its truth (``min_hours`` = 24).
FIELD_KINDS: dict[str, FieldTruth] = {
    "clean": _CLEAN,  # delivered mail only
    "soft_old": _SOFT_OLD,  # latest CRM mail soft-bounced 2-20 days ago
    "soft_young": _SOFT_YOUNG,  # latest CRM mail soft-bounced 1-20 h ago
    "late_bounce": _SOFT_YOUNG,  # latest CRM mail sent 3 days ago, its bounce came 2-20 h ago
    "hard": _HARD,  # latest CRM mail hard-bounced
    "recovered": _CLEAN,  # bounced, unblocked by hand, delivered since
    "limit": FieldTruth("soft", "limit_reached", "temporary"),  # soft-bounced after 5 unblocks
    "empty": _CLEAN,  # no address
}


def _field_history(kind: str, rng: random.Random) -> tuple[str | None, int, list[_Mail2]]:
    """(blocked, unblock_count, mails to "self") of one field's kind; ages in hours."""
    d = 24.0
    if kind == "empty":
        return None, 0, []
    older = [_Mail2("self", rng.uniform(25, 60) * d, "ok")]
    if kind == "clean":
        return None, 0, [*older, _Mail2("self", rng.uniform(0.5, 20) * d, "ok")]
    if kind == "soft_old":
        return "temporary", 0, [*older, _Mail2("self", rng.uniform(2, 20) * d, "soft")]
    if kind == "soft_young":
        return "temporary", 0, [*older, _Mail2("self", rng.uniform(1, 20), "soft")]
    if kind == "late_bounce":
        return "temporary", 0, [*older, _Mail2("self", 3 * d, "soft", bounce_hours=rng.uniform(2, 20))]
    if kind == "hard":
        return "permanent", 0, [*older, _Mail2("self", rng.uniform(0.5, 20) * d, "hard")]
    if kind == "recovered":
        bounce = rng.uniform(10, 20) * d
        return None, 1, [*older, _Mail2("self", bounce, "soft"), _Mail2("self", bounce - 5 * d, "ok")]
    if kind == "limit":
        return "temporary", 5, [*older, _Mail2("self", rng.uniform(2, 20) * d, "soft")]
    raise KeyError(kind)


def seed_address_org(
    backend: EmulatorBackend, n: int = 800, module: str = "Leads", seed: int = 19
) -> tuple[dict[str, dict[str, FieldTruth]], dict[str, tuple[str, str]]]:
    """``n`` records whose two addresses each have a history of their own (a random kind of
    :data:`FIELD_KINDS` each, interleaved in time), plus noise that must not change any verdict: a user's own
    mail to an address after its latest CRM mail, the contact's replies, and now and then a bounce to an
    address the record held before. Returns ``({id: {field: truth}}, {id: (Email kind, Secondary kind)})``."""
    mod = backend.module(module)
    if mod is None or not (mod.has_email and mod.has_secondary_email):
        raise KeyError(f"{module!r} is not a module with Email and Secondary_Email")
    rng = random.Random(f"{seed}:{module}:addresses")
    now = backend.now()
    kinds = list(FIELD_KINDS)
    truth: dict[str, dict[str, FieldTruth]] = {}
    chosen: dict[str, tuple[str, str]] = {}
    for i in range(n):
        pair = (rng.choice(kinds), rng.choice(kinds))
        specs = [_field_history(k, rng) for k in pair]
        addresses = [
            None if pair[0] == "empty" else f"p{i}@{_DOMAINS[i % 3]}",
            None if pair[1] == "empty" else f"s{i}@alt.example.com",
        ]
        rid = backend.add_record(
            mod.name,
            fields={"Last_Name": f"Many {i}", "Email": addresses[0], "Secondary_Email": addresses[1]},
            email_blocked=specs[0][0],
            email_unblock_count=specs[0][1],
            secondary_blocked=specs[1][0],
            secondary_unblock_count=specs[1][1],
        )
        mails: list[tuple[str, _Mail2]] = []
        for address, (_blocked, _count, own) in zip(addresses, specs, strict=True):
            if address is None:
                continue
            mails += [(address, m) for m in own]
            if rng.random() < 0.3:  # the user wrote from their own mailbox after the CRM's latest mail
                mails.append((address, _Mail2("self", rng.uniform(0.1, 0.9), "user_sent")))
            if rng.random() < 0.3:
                mails.append((address, _Mail2("self", rng.uniform(0.1, 0.9), "received")))
        if rng.random() < 0.15:  # a bounce to an address this record no longer holds
            mails.append((f"old{i}@gone.example.net", _Mail2("old", rng.uniform(0.2, 5), "hard")))
        if not mails:
            backend.set_no_emails(mod.name, rid)
        for address, mail in sorted(mails, key=lambda am: -am[1].sent_hours):
            _add_mail(backend, mod.name, rid, address, mail, now)
        truth[rid] = {f: FIELD_KINDS[k] for f, k in zip(_FIELDS, pair, strict=True)}
        chosen[rid] = pair
    return truth, chosen
