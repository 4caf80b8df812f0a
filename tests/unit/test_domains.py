"""check_domain (issue 19) against a real DNS server on 127.0.0.1 that the test starts: no query leaves the
machine. The server (``testing/dns_server.py``) is a UDP socket answering with dnspython-built messages from a
small zone, counting every question it gets; a silent one never answers (a resolver timeout)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from airflow_provider_zohocrm.testing.dns_server import LocalDNSServer
from airflow_provider_zohocrm.zoho.domains import (
    MAX_CONSECUTIVE_TIMEOUTS,
    DomainChecker,
    DomainStatus,
    domain_of,
    is_domain_failure,
    parse_dns_options,
)
from airflow_provider_zohocrm.zoho.emails import BounceCheck, Verdict
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.unblock_job import UnblockPlan

#: name -> {rdtype: [rdata text]}; names not here answer NXDOMAIN.
ZONE: dict[str, dict[str, list[str]]] = {
    "good.test.": {"MX": ["10 mx1.good.test."], "A": ["192.0.2.1"]},
    "mx1.good.test.": {"A": ["192.0.2.25"]},
    "a-only.test.": {"A": ["192.0.2.7"]},
    "aaaa-only.test.": {"AAAA": ["2001:db8::7"]},
    "nomail.test.": {"TXT": ['"v=spf1 -all"']},
    "nullmx.test.": {"MX": ["0 ."]},
}


@pytest.fixture
def dns_server() -> Iterator[LocalDNSServer]:
    with LocalDNSServer(ZONE) as server:
        yield server


@pytest.fixture
def silent_dns() -> Iterator[LocalDNSServer]:
    with LocalDNSServer(ZONE, answer=False) as server:
        yield server


def checker(server: LocalDNSServer, timeout: float = 2.0) -> DomainChecker:
    return DomainChecker(nameservers=["127.0.0.1"], port=server.port, timeout=timeout)


def soft(
    sub: str = "Temporary Domain Failure", reason: str = "Retries Exhausted. Host not reachable."
) -> BounceCheck:
    return BounceCheck(Verdict.SOFT, category="Temporarily blocked", sub_category=sub, reason=reason)


# -- the DNS answers -------------------------------------------------------------------------------------------


def test_a_good_mx_is_live_with_one_query(dns_server: LocalDNSServer) -> None:
    answer = checker(dns_server).check("good.test")
    assert answer.status == DomainStatus.LIVE
    assert dns_server.questions == Counter({("good.test.", "MX"): 1})


def test_nxdomain_is_dead(dns_server: LocalDNSServer) -> None:
    answer = checker(dns_server).check("gone.test")
    assert answer.status == DomainStatus.DEAD and "NXDOMAIN" in answer.reason


def test_no_mx_but_an_a_record_is_live_per_rfc_5321(dns_server: LocalDNSServer) -> None:
    dns_checker = checker(dns_server)
    assert dns_checker.check("a-only.test").status == DomainStatus.LIVE
    assert dns_checker.check("aaaa-only.test").status == DomainStatus.LIVE
    assert (
        dns_server.questions[("a-only.test.", "MX")] == 1 and dns_server.questions[("a-only.test.", "A")] == 1
    )
    assert dns_server.questions[("aaaa-only.test.", "AAAA")] == 1


def test_no_mail_host_at_all_and_a_null_mx_are_dead(dns_server: LocalDNSServer) -> None:
    dns_checker = checker(dns_server)
    none = dns_checker.check("nomail.test")
    assert none.status == DomainStatus.DEAD and "no mail host" in none.reason
    null = dns_checker.check("nullmx.test")
    assert null.status == DomainStatus.DEAD and "null MX" in null.reason


def test_a_resolver_timeout_is_unknown_and_never_raises(silent_dns: LocalDNSServer) -> None:
    answer = checker(silent_dns, timeout=0.3).check("good.test")
    assert answer.status == DomainStatus.UNKNOWN and "failed" in answer.reason
    assert silent_dns.count() >= 1  # the question reached the (silent) server


def test_each_domain_is_asked_once_per_run_even_from_many_threads(dns_server: LocalDNSServer) -> None:
    dns_checker = checker(dns_server)
    domains = ["good.test", "GOOD.test.", "gone.test", "a-only.test"] * 10
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(dns_checker.check, domains))
    assert {a.domain: a.status for a in answers} == {
        "good.test": DomainStatus.LIVE,
        "gone.test": DomainStatus.DEAD,
        "a-only.test": DomainStatus.LIVE,
    }
    assert dns_server.questions == Counter(
        {
            ("good.test.", "MX"): 1,
            ("gone.test.", "MX"): 1,
            ("a-only.test.", "MX"): 1,
            ("a-only.test.", "A"): 1,
        }
    )
    assert dns_checker.queries == dns_server.count() == 4


# -- applied to a field's check ----------------------------------------------------------------------------------


def test_a_dead_domain_defers_a_domain_failure_bounce(dns_server: LocalDNSServer) -> None:
    dns_checker = checker(dns_server)
    checks = dns_checker.apply_all(
        {"Email": soft(), "Secondary_Email": soft()},
        {"Email": "someone@gone.test", "Secondary_Email": "someone@good.test"},
    )
    assert checks["Email"].verdict == Verdict.DEFERRED and "NXDOMAIN" in checks["Email"].note
    assert checks["Secondary_Email"].verdict == Verdict.SOFT


def test_an_unknown_answer_sends_the_field_as_today(
    silent_dns: LocalDNSServer, caplog: pytest.LogCaptureFixture
) -> None:
    check = checker(silent_dns, timeout=0.3).apply(soft(), "someone@good.test")
    assert check.verdict == Verdict.SOFT and "check_domain unknown" in check.note
    assert "check_domain" in caplog.text


def test_only_domain_or_host_failures_are_looked_up(dns_server: LocalDNSServer) -> None:
    dns_checker = checker(dns_server)
    full = soft(sub="Mailbox full", reason="552 mailbox full")
    assert dns_checker.apply(full, "x@gone.test") == full
    hard = BounceCheck(Verdict.HARD, sub_category="Temporary Domain Failure")
    assert dns_checker.apply(hard, "x@gone.test") == hard
    assert dns_server.count() == 0
    for sub, reason in (
        ("Temporary Domain Failure", ""),
        ("Other", "Retries Exhausted. Host not reachable."),
        ("Domain not found", ""),
        ("DNS failure", ""),
    ):
        assert is_domain_failure(soft(sub=sub, reason=reason)), (sub, reason)
    assert not is_domain_failure(soft(sub="Out of Office", reason="auto reply"))


def test_a_refused_query_is_unknown() -> None:
    dns_checker = DomainChecker(nameservers=["127.0.0.1"], port=9, timeout=0.2)  # nothing listens: refused
    answer = dns_checker.check("good.test")
    assert answer.status == DomainStatus.UNKNOWN


def test_domain_of_and_options() -> None:
    assert domain_of(" Ada@Example.COM. ") == "example.com"
    assert domain_of("no-at-sign") is None and domain_of(None) is None
    made = DomainChecker.from_options({"nameservers": ["127.0.0.1"], "port": 5353, "timeout": 1})
    assert isinstance(made, DomainChecker)
    for bad in ({"port": "53"}, {"timeout": "1"}, {"nameservers": "127.0.0.1"}, {"server": "x"}):
        with pytest.raises(ZohoValidationError):
            DomainChecker.from_options(bad)


# -- issue 27 row 5: options checked before any call, a resolver that cannot be built, repeated timeouts ---------


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"nameservers": ["127.0.0.1 "]}, "not an IP address"),
        ({"nameservers": ["https://dns.example/"]}, "not an IP address"),
        ({"nameservers": ["dns.example"]}, "not an IP address"),
        ({"nameservers": ["127.0.0.1:53"]}, "not an IP address"),
        ({"nameservers": "127.0.0.1"}, "non-empty list"),
        ({"nameservers": []}, "non-empty list"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": "53"}, "port"),
        ({"port": True}, "port"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"server": "10.0.0.2"}, "unknown DNS option"),
        ("not json", "must be an object"),
        (["10.0.0.2"], "must be an object"),
    ],
)
def test_dns_options_are_refused_naming_what_is_wrong(bad: object, words: str) -> None:
    with pytest.raises(ZohoValidationError, match=f"dns_options.*{words}"):
        parse_dns_options(bad)


def test_good_dns_options_pass() -> None:
    assert parse_dns_options(None) == {} and parse_dns_options("") == {}
    assert parse_dns_options('{"nameservers": ["10.0.0.2", "2001:db8::53"], "port": 5353, "timeout": 1}') == {
        "nameservers": ["10.0.0.2", "2001:db8::53"],
        "port": 5353,
        "timeout": 1.0,
    }


def test_a_resolver_that_cannot_be_built_fails_before_any_query(tmp_path) -> None:
    broken = DomainChecker(resolv_conf=str(tmp_path / "no-resolv.conf"))
    with pytest.raises(ZohoValidationError, match="no DNS resolver"):
        broken.build_resolver()
    assert broken.queries == 0


def test_the_plan_refuses_bad_dns_options_before_any_call() -> None:
    with pytest.raises(ZohoValidationError, match="not an IP address"):
        UnblockPlan.build(
            "Leads", ["1"], verify="emails", check_domain=True, dns_options={"nameservers": ["127.0.0.1 "]}
        )


def test_after_consecutive_timeouts_the_checker_stops_asking(silent_dns: LocalDNSServer) -> None:
    dns_checker = checker(silent_dns, timeout=0.2)
    answers = [dns_checker.check(f"d{i}.test") for i in range(8)]
    assert all(a.status == DomainStatus.UNKNOWN for a in answers)
    assert dns_checker.queries == MAX_CONSECUTIVE_TIMEOUTS == silent_dns.count()
    assert "consecutive timeouts" in dns_checker.stopped
    assert dns_checker.unchecked == 8 - MAX_CONSECUTIVE_TIMEOUTS
    assert all("not looked up" in a.reason for a in answers[MAX_CONSECUTIVE_TIMEOUTS:])


def test_an_answer_between_timeouts_resets_the_count(dns_server: LocalDNSServer) -> None:
    dns_checker = checker(dns_server)
    for i in range(MAX_CONSECUTIVE_TIMEOUTS + 2):
        assert dns_checker.check(f"gone{i}.test").status == DomainStatus.DEAD  # NXDOMAIN: answered
    assert dns_checker.stopped == ""
