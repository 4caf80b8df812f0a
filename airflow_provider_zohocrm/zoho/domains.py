"""``check_domain``: never spend an unblock on a soft bounce whose domain is still dead (issue 19, opt-in).

A temporarily blocked address can be unblocked at most 5 times. When its bounce says the *domain or host*
failed, and the domain still has no mail host, unblocking it only buys another bounce. So before such a field
goes to the unblock call, its domain is looked up (RFC 5321 section 5.1): the MX records, and when there are
none, the A and AAAA records (the "implicit MX").

- NXDOMAIN, a null MX (RFC 7505: one MX ``0 .``), or neither MX nor A/AAAA: ``deferred``, with that reason.
- A DNS failure of our own (timeout, no resolver configured, every server failing): ``unknown`` — logged, the
  field is sent as it would be without the check, and the run never fails for it.
- Anything else (a mail host exists): the field is sent.

The answers are cached per domain for the life of a :class:`DomainChecker` (one run), and concurrent checks of
one domain wait for a single lookup, so the cost is one MX query per distinct domain (two more, A and AAAA,
only for a domain without MX). Only soft bounces whose sub-category or reason names a domain or host failure
are looked up (:data:`DOMAIN_FAILURE_PATTERNS`).

Pure of Airflow; uses dnspython.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from airflow_provider_zohocrm.zoho.emails import BounceCheck, Verdict, normalise_address

log = logging.getLogger(__name__)

#: Sub-categories and reasons (normalised: lower case, words) meaning the recipient's domain or mail host
#: failed. From Zoho CRM's bounce help ("Temporary Domain Failure: unable to find the domain connected to this
#: email address") and the reasons Zoho shows ("Retries Exhausted. Host not reachable."); the others are the
#: usual wordings of the same failures.
DOMAIN_FAILURE_PATTERNS: tuple[str, ...] = (
    r"temporary domain failure",
    r"domain failure",
    r"host (is )?not reachable",
    r"host unreachable",
    r"host not found",
    r"unable to find the domain",
    r"domain (name )?(does not exist|not found)",
    r"no such domain",
    r"dns (failure|error|lookup failed)",
    r"no mx",
    r"mx record",
)
_DOMAIN_FAILURE_RE = re.compile(r"\b(" + "|".join(DOMAIN_FAILURE_PATTERNS) + r")\b")


class DomainStatus(StrEnum):
    """What DNS says about a domain's mail."""

    LIVE = "live"  # a mail host exists (MX, or A/AAAA as the implicit MX)
    DEAD = "dead"  # NXDOMAIN, null MX, or no mail host at all
    UNKNOWN = "unknown"  # our own DNS failed (timeout, no resolver): no judgement


@dataclass(frozen=True)
class DomainAnswer:
    """One domain's status and why (for the report's reason)."""

    domain: str
    status: DomainStatus
    reason: str


def _words(text: str | None) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", (text or "").lower()).split())


def is_domain_failure(check: BounceCheck) -> bool:
    """Whether a soft bounce's sub-category (or category, or reason) says the domain or host failed."""
    if check.verdict != Verdict.SOFT:
        return False
    texts = (check.sub_category, check.category, check.reason)
    return any(_DOMAIN_FAILURE_RE.search(_words(t)) for t in texts)


def domain_of(address: str | None) -> str | None:
    """The domain part of an address, lower case, without a trailing dot; None when there is none."""
    text = normalise_address(address)
    if text is None or "@" not in text:
        return None
    domain = text.rsplit("@", 1)[1].strip().rstrip(".")
    return domain or None


class DomainChecker:
    """Looks up domains' mail hosts, each domain once per instance (thread-safe).

    ``nameservers``/``port``/``timeout`` configure the resolver (default: the system's, ``/etc/resolv.conf``).
    ``timeout`` bounds the whole lookup of one record type (dnspython's ``lifetime``).
    """

    def __init__(
        self,
        *,
        nameservers: Sequence[str] | None = None,
        port: int = 53,
        timeout: float = 5.0,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
        self._nameservers = list(nameservers) if nameservers else None
        self._port = port
        self._timeout = timeout
        self._resolver: dns.resolver.Resolver | None = None
        self._resolver_error: str | None = None
        self._lock = threading.Lock()
        self._answers: dict[str, DomainAnswer] = {}
        self._inflight: dict[str, threading.Lock] = {}
        #: DNS queries sent (for the report and tests).
        self.queries = 0

    @classmethod
    def from_options(cls, options: Mapping[str, object] | None) -> DomainChecker:
        """From task options ``{"nameservers": [...], "port": 53, "timeout": 5}`` (all optional)."""
        opts = dict(options or {})
        unknown = set(opts) - {"nameservers", "port", "timeout"}
        if unknown:
            raise ValueError(f"unknown DNS option(s) {sorted(unknown)}: use nameservers, port, timeout")
        servers = opts.get("nameservers")
        if servers is not None and (
            not isinstance(servers, list | tuple) or not all(isinstance(s, str) for s in servers)
        ):
            raise ValueError(f"nameservers must be a list of IP addresses, not {servers!r}")
        port, timeout = opts.get("port", 53), opts.get("timeout", 5.0)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be a port number, not {port!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ValueError(f"timeout must be a number of seconds, not {timeout!r}")
        return cls(nameservers=servers, port=port, timeout=float(timeout))

    def _get_resolver(self) -> dns.resolver.Resolver | None:
        with self._lock:
            if self._resolver is None and self._resolver_error is None:
                try:
                    if self._nameservers is not None:
                        resolver = dns.resolver.Resolver(configure=False)
                        resolver.nameservers = list(self._nameservers)
                    else:
                        resolver = dns.resolver.Resolver()
                    resolver.port = self._port
                    resolver.timeout = self._timeout
                    resolver.lifetime = self._timeout
                    resolver.cache = None  # our own cache, per run, counts the queries
                    self._resolver = resolver
                except (dns.exception.DNSException, OSError, ValueError) as exc:
                    self._resolver_error = f"no DNS resolver: {exc}"
            return self._resolver

    def check(self, domain: str) -> DomainAnswer:
        """The domain's mail status, looked up once per instance; concurrent callers wait for that lookup."""
        key = domain.strip().rstrip(".").lower()
        with self._lock:
            known = self._answers.get(key)
            if known is not None:
                return known
            gate = self._inflight.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                known = self._answers.get(key)
            if known is not None:
                return known
            answer = self._lookup(key)
            with self._lock:
                self._answers[key] = answer
                self._inflight.pop(key, None)
            return answer

    def _query(
        self, resolver: dns.resolver.Resolver, name: dns.name.Name, rdtype: str
    ) -> dns.resolver.Answer:
        with self._lock:
            self.queries += 1
        return resolver.resolve(name, rdtype, search=False, raise_on_no_answer=True)

    def _lookup(self, domain: str) -> DomainAnswer:
        try:
            name = dns.name.from_text(domain)
        except (dns.exception.DNSException, UnicodeError) as exc:
            return DomainAnswer(domain, DomainStatus.DEAD, f"{domain!r} is not a domain name ({exc})")
        resolver = self._get_resolver()
        if resolver is None:
            return DomainAnswer(domain, DomainStatus.UNKNOWN, self._resolver_error or "no DNS resolver")
        try:
            try:
                mx = self._query(resolver, name, "MX")
            except dns.resolver.NoAnswer:
                mx = None
            if mx is not None:
                hosts = [r for r in mx if r.rdtype == dns.rdatatype.MX]
                if hosts and all(str(r.exchange) == "." for r in hosts):
                    return DomainAnswer(domain, DomainStatus.DEAD, f"{domain} accepts no mail (null MX)")
                return DomainAnswer(domain, DomainStatus.LIVE, f"{domain} has a mail host (MX)")
            for rdtype in ("A", "AAAA"):
                try:
                    self._query(resolver, name, rdtype)
                except dns.resolver.NoAnswer:
                    continue
                return DomainAnswer(domain, DomainStatus.LIVE, f"{domain} has no MX but an {rdtype} record")
            return DomainAnswer(domain, DomainStatus.DEAD, f"{domain} has no mail host (no MX, A or AAAA)")
        except dns.resolver.NXDOMAIN:
            return DomainAnswer(domain, DomainStatus.DEAD, f"{domain} does not exist (NXDOMAIN)")
        except (dns.exception.DNSException, OSError) as exc:
            # timeout, every server failing (SERVFAIL), no route: our DNS, not the domain
            return DomainAnswer(
                domain, DomainStatus.UNKNOWN, f"DNS lookup of {domain} failed: {type(exc).__name__}"
            )

    def apply(self, check: BounceCheck, address: str | None) -> BounceCheck:
        """The field's check after the domain check: ``deferred`` when a domain/host-failure soft bounce's
        domain is dead; unchanged otherwise (an unknown answer is logged and changes nothing)."""
        if not is_domain_failure(check):
            return check
        domain = domain_of(address)
        if domain is None:
            return check
        answer = self.check(domain)
        if answer.status == DomainStatus.DEAD:
            return replace(check, verdict=Verdict.DEFERRED, note=f"check_domain: {answer.reason}")
        if answer.status == DomainStatus.UNKNOWN:
            log.warning(
                "check_domain: %s; the field is sent to the unblock call as without the check.", answer.reason
            )
            return replace(check, note=f"check_domain unknown: {answer.reason}")
        return check

    def apply_all(
        self, checks: Mapping[str, BounceCheck], addresses: Mapping[str, str | None]
    ) -> dict[str, BounceCheck]:
        """:meth:`apply` to each field of one record."""
        return {f: self.apply(check, addresses.get(f)) for f, check in checks.items()}


__all__ = [
    "DOMAIN_FAILURE_PATTERNS",
    "DomainAnswer",
    "DomainChecker",
    "DomainStatus",
    "domain_of",
    "is_domain_failure",
]
