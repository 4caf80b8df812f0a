"""Deterministic demo datasets: every bounce state Zoho has, at any size (100,000 records in ~1 s)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from .backend import ID_BASE, EmailState, EmulatorBackend, Record

#: cvid of the "Bounced leads" custom view (every Lead with any blocked email field).
BOUNCED_VIEW_ID = "6000000031001"
#: cvid of the "Bounced contacts" custom view.
CONTACTS_BOUNCED_VIEW_ID = "6000000031003"
#: Custom field an org maintains itself; usable in COQL (``where Email_Bounce_Status = 'Temporary'``).
BOUNCE_STATUS_FIELD = "Email_Bounce_Status"

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

    def of(self, kind: str, module: str = "Leads") -> list[str]:
        """Ids of one kind (``temporary``, ``permanent``, ``limit``, ``locked``, ``secondary``,
        ``permanent_secondary``, ``clean``) in a module."""
        return self.ids.get(module, {}).get(kind, [])

    def bounced(self, module: str = "Leads") -> list[str]:
        """Every id the module's bounced view lists at seed time, in id order."""
        return sorted((i for k in BOUNCED_MIX for i in self.of(k, module)), key=int)


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
) -> SeedResult:
    """A realistic org: bounced + clean Leads, some Contacts, and the two bounced custom views.

    Defaults: ``n_clean = max(5, n_bounced // 10)``; ``n_contacts_bounced = max(6, n_bounced // 10)``.
    """
    clean = max(5, n_bounced // 10) if n_clean is None else n_clean
    contacts = max(6, n_bounced // 10) if n_contacts_bounced is None else n_contacts_bounced
    result = SeedResult()
    result.ids["Leads"] = seed_module(backend, "Leads", n_bounced, clean, seed)
    result.ids["Contacts"] = seed_module(backend, "Contacts", contacts, max(2, contacts // 5), seed)
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
