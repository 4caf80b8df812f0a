"""``check_domain``: never spend an unblock on a soft bounce whose domain is still dead (issue 19, opt-in).

A temporarily blocked address can be unblocked at most 5 times. When its bounce says the *domain or host*
failed, and the domain still has no mail host, unblocking it only buys another bounce. So before such a field
goes to the unblock call, its domain is looked up (RFC 5321 section 5.1): the MX records, and when there are
none, the A and AAAA records (the "implicit MX").

- NXDOMAIN, a null MX (RFC 7505: one MX ``0 .``), or neither MX nor A/AAAA: ``deferred``, with that reason.
- A DNS failure of our own (timeout, every server failing): ``unknown`` — logged, the field is sent as it
  would be without the check, and the run never fails for it. After :data:`MAX_CONSECUTIVE_TIMEOUTS` timeouts
  in a row the checker stops asking (:attr:`DomainChecker.stopped` says why, for the report): every later
  domain is ``unknown`` at once instead of paying the timeout per domain.
- The options are checked before any call (:func:`parse_dns_options`: nameservers are IP addresses, port
  1-65535, timeout > 0), and a resolver that cannot be built (no system resolver configuration) fails the task
  before any call (:meth:`DomainChecker.build_resolver`), rather than counting as a DNS failure of each domain.
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
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.params import DNS_OPTION_KEYS, parse_dns_options

log = logging.getLogger(__name__)

#: Consecutive DNS timeouts after which a run stops asking (each would cost the whole ``timeout`` again).
MAX_CONSECUTIVE_TIMEOUTS = 3
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
    """One domain's status and why (for the report's reason); ``timed_out``: our resolver timed out."""

    domain: str
    status: DomainStatus
    reason: str
    timed_out: bool = False


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
        resolv_conf: str = "/etc/resolv.conf",
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
        self._nameservers = list(nameservers) if nameservers else None
        self._port = port
        self._timeout = timeout
        #: The system resolver's configuration (used without ``nameservers``; tests point it elsewhere).
        self._resolv_conf = resolv_conf
        self._timeouts_in_row = 0
        #: Why the checker stopped asking (after consecutive timeouts), for the report; "" while it asks.
        self.stopped = ""
        #: Domains answered ``unknown`` without a query because the checker had stopped.
        self.unchecked = 0
        self._resolver: dns.resolver.Resolver | None = None
        self._resolver_error: str | None = None
        self._lock = threading.Lock()
        self._answers: dict[str, DomainAnswer] = {}
        self._inflight: dict[str, threading.Lock] = {}
        #: DNS queries sent (for the report and tests).
        self.queries = 0

    @classmethod
    def from_options(cls, options: object, *, build: bool = False) -> DomainChecker:
        """From task options ``{"nameservers": [...], "port": 53, "timeout": 5}`` (all optional), checked by
        :func:`parse_dns_options` (raises :class:`ZohoValidationError`). ``build``: build the resolver now, so
        that one that cannot be built fails here, before any call."""
        opts = parse_dns_options(options)
        servers = opts.get("nameservers")
        port, timeout = opts.get("port", 53), opts.get("timeout", 5.0)
        assert isinstance(port, int) and isinstance(timeout, float)
        checker = cls(
            nameservers=list(servers) if isinstance(servers, list) else None, port=port, timeout=timeout
        )
        if build:
            checker.build_resolver()
        return checker

    def build_resolver(self) -> dns.resolver.Resolver:
        """The resolver, built once; :class:`ZohoValidationError` when it cannot be built (e.g. no system
        resolver configuration): a configuration problem, so it fails the task rather than each lookup."""
        resolver = self._get_resolver()
        if resolver is None:
            raise ZohoValidationError(f"check_domain: {self._resolver_error}; set dns_options.nameservers")
        return resolver

    def _get_resolver(self) -> dns.resolver.Resolver | None:
        with self._lock:
            if self._resolver is None and self._resolver_error is None:
                try:
                    if self._nameservers is not None:
                        resolver = dns.resolver.Resolver(configure=False)
                        resolver.nameservers = list(self._nameservers)
                    else:
                        resolver = dns.resolver.Resolver(filename=self._resolv_conf)
                    resolver.port = self._port
                    resolver.timeout = self._timeout
                    resolver.lifetime = self._timeout
                    resolver.cache = None  # our own cache, per run, counts the queries
                    self._resolver = resolver
                except (dns.exception.DNSException, OSError, ValueError) as exc:
                    self._resolver_error = f"no DNS resolver ({type(exc).__name__}: {exc})"
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
        with self._lock:
            if self.stopped:
                self.unchecked += 1
                return DomainAnswer(domain, DomainStatus.UNKNOWN, f"not looked up: {self.stopped}")
        answer = self._ask(resolver, name, domain)
        self._note(answer)
        return answer

    def _note(self, answer: DomainAnswer) -> None:
        """Count timeouts in a row; stop asking after :data:`MAX_CONSECUTIVE_TIMEOUTS` of them."""
        with self._lock:
            if not answer.timed_out:
                self._timeouts_in_row = 0
                return
            self._timeouts_in_row += 1
            if self._timeouts_in_row >= MAX_CONSECUTIVE_TIMEOUTS and not self.stopped:
                self.stopped = (
                    f"DNS lookups stopped after {MAX_CONSECUTIVE_TIMEOUTS} consecutive timeouts"
                    f" ({self._timeout:g} s each); later domain-failure bounces are sent as without check_domain"
                )
                log.warning("check_domain: %s.", self.stopped)

    def _ask(self, resolver: dns.resolver.Resolver, name: dns.name.Name, domain: str) -> DomainAnswer:
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
                domain,
                DomainStatus.UNKNOWN,
                f"DNS lookup of {domain} failed: {type(exc).__name__}",
                timed_out=isinstance(exc, dns.exception.Timeout),
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
    "DNS_OPTION_KEYS",
    "DOMAIN_FAILURE_PATTERNS",
    "MAX_CONSECUTIVE_TIMEOUTS",
    "DomainAnswer",
    "DomainChecker",
    "DomainStatus",
    "domain_of",
    "is_domain_failure",
    "parse_dns_options",
]
