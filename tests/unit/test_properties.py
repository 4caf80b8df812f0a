"""Property-based tests (hypothesis): batching and outcome classification lose nothing and invent nothing,
whatever the input and whatever Zoho answers; input validation and URL safety hold for any string."""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

import pytest
import urllib3
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_zohocrm.zoho.client import validate_module
from airflow_provider_zohocrm.zoho.datacenters import ensure_safe_url
from airflow_provider_zohocrm.zoho.errors import ZohoConfigError, ZohoValidationError
from airflow_provider_zohocrm.zoho.unblock import (
    MAX_IDS_PER_CALL,
    Outcome,
    UnblockReport,
    UnblockRequest,
    classify_item,
    format_table,
    match_items,
    merge_reports,
    split_batches,
    validate_record_ids,
)
from airflow_provider_zohocrm.zoho.validation import SUPPORTED_MODULES

settings.register_profile(
    "zohocrm", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("zohocrm")

OUTCOMES = [o.value for o in Outcome]
record_id = st.integers(min_value=1, max_value=10**19).map(str)
unique_ids = st.lists(record_id, unique=True, max_size=1200)
batch_size = st.integers(min_value=1, max_value=MAX_IDS_PER_CALL)


def flat(groups: list[list[str]]) -> list[str]:
    return [rid for group in groups for rid in group]


# -- batching ------------------------------------------------------------------------------------------------------


@given(ids=unique_ids, size=batch_size)
@example(ids=[str(i) for i in range(1, 502)], size=MAX_IDS_PER_CALL)
def test_request_batches_partition_ids_in_order_within_zohos_limit(ids: list[str], size: int) -> None:
    request = UnblockRequest.build("Leads", ids, ["Email"], size)
    batches = request.batches()
    assert flat(batches) == ids  # nothing lost, nothing repeated, order kept
    assert all(1 <= len(b) <= size <= MAX_IDS_PER_CALL for b in batches)
    assert all(len(b) == size for b in batches[:-1])  # only the last batch may be short
    assert len(batches) == -(-len(ids) // size)


@given(ids=unique_ids, size=batch_size, max_groups=st.integers(min_value=1, max_value=2000))
@example(ids=[str(i) for i in range(1, 1001)], size=1, max_groups=3)
def test_split_batches_groups_whole_batches_evenly_within_max_groups(
    ids: list[str], size: int, max_groups: int
) -> None:
    groups = split_batches(ids, size, max_groups)
    assert flat(groups) == ids
    n_batches = -(-len(ids) // size)
    assert len(groups) == min(n_batches, max_groups)
    assert all(groups)  # no empty mapped task
    # every group but the last holds whole batches; groups differ by at most one batch
    assert all(len(g) % size == 0 for g in groups[:-1])
    per_group = [-(-len(g) // size) for g in groups]
    assert not per_group or max(per_group) - min(per_group) <= 1
    # a mapped task re-batches its group with the same size: still ≤ 500 per call, same order
    for group in groups:
        rebatched = UnblockRequest.build("Leads", group, ["Email"], size).batches()
        assert flat(rebatched) == group and all(len(b) <= size for b in rebatched)


@given(max_groups=st.integers(max_value=0))
def test_split_batches_refuses_no_groups(max_groups: int) -> None:
    with pytest.raises(ZohoValidationError):
        split_batches(["1"], 1, max_groups)


# -- what Zoho may answer ----------------------------------------------------------------------------------------

_MESSAGES = [
    "Unblocked successfully",
    "Email unblocked successfully",
    "Email is already unblocked",
    "Cannot unblock, email has been unblocked 5 times already",
    "Cannot unblock, Email is blocked permanently",
    "unknown field provided",
    "Record is locked",
    "Invalid record provided",
    "",
    None,
]
_CODES = ["SUCCESS", "NOT_ALLOWED", "INVALID_DATA", "SOMETHING_NEW", "success", "", None, 0]
_STATUSES = ["success", "error", "", None, "SUCCESS", 1]
garbage = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def zoho_answers(draw: st.DrawFn) -> tuple[list[str], list[dict[str, Any]]]:
    """Sent ids and an answer: one item per id (by id, by json_path, or anonymous), then items dropped,
    duplicated, shuffled, naming ids never sent, and garbage."""
    ids = draw(st.lists(record_id, unique=True, min_size=0, max_size=40))
    items: list[dict[str, Any]] = []
    for index, rid in enumerate(ids):
        how = draw(st.sampled_from(["id", "id", "int_id", "json_path", "anonymous"]))
        details: Any = (
            {"id": rid}
            if how == "id"
            else {"id": int(rid)}
            if how == "int_id"
            else (
                {"json_path": f"$.ids[{index}]"}
                if how == "json_path"
                else draw(st.one_of(st.just({}), garbage))
            )
        )
        items.append(
            {
                "code": draw(st.sampled_from(_CODES)),
                "status": draw(st.sampled_from(_STATUSES)),
                "message": draw(st.sampled_from(_MESSAGES)),
                "details": details,
            }
        )
    if items and draw(st.booleans()):
        drop = draw(st.sets(st.integers(0, len(items) - 1)))
        items = [it for i, it in enumerate(items) if i not in drop]
    if items and draw(st.booleans()):
        items += draw(st.lists(st.sampled_from(items), max_size=5))  # duplicated answers
    extra_ids = draw(st.lists(record_id.filter(lambda r: r not in ids), max_size=3))
    items += [{"code": "SUCCESS", "status": "success", "details": {"id": r}} for r in extra_ids]
    items += [
        {
            "code": "SUCCESS",
            "status": "success",
            "details": {"json_path": f"$.ids[{draw(st.integers(0, 99))}]"},
        }
        for _ in range(draw(st.integers(0, 2)))
    ]
    items += [
        {"item": g} for g in draw(st.lists(garbage, max_size=3))
    ]  # what the client makes of non-objects
    items += draw(
        st.lists(st.fixed_dictionaries({"code": garbage, "details": garbage, "status": garbage}), max_size=2)
    )
    if draw(st.booleans()):
        random.Random(draw(st.integers())).shuffle(items)
    return ids, items


def _names(item: Any) -> str | None:
    details = item.get("details")
    return str(details["id"]) if isinstance(details, dict) and details.get("id") is not None else None


@given(answer=zoho_answers())
def test_match_items_gives_every_sent_id_exactly_one_answer_and_never_another_records(
    answer: tuple[list[str], list[dict[str, Any]]],
) -> None:
    ids, items = answer
    pairs = match_items(ids, items)
    assert [rid for rid, _ in pairs] == ids
    for rid, item in pairs:
        named = _names(item)
        assert named is None or named == rid, f"{rid} got the answer about {named}"
    # an answer that names a sent id is used for that id (the first such answer)
    for rid, item in pairs:
        first = next((it for it in items if _names(it) == rid), None)
        if first is not None:
            assert item is first


@given(answer=zoho_answers())
def test_add_answer_partitions_the_batch_into_outcomes(
    answer: tuple[list[str], list[dict[str, Any]]],
) -> None:
    ids, items = answer
    report = UnblockReport(module="Leads", unblock_fields=["Email"])
    counts = report.add_answer(ids, items)
    assert sum(counts.values()) == len(ids) == report.total
    reported = [rid for lst in report.ids.values() for rid in lst]
    assert sorted(reported) == sorted(ids) and len(set(reported)) == len(reported)
    assert set(report.messages) <= set(report.ids["error"]) | set(report.ids["not_allowed"])
    data = report.to_dict()
    assert data["total"] == len(ids) and all(data["counts"][o] == len(data["ids"][o]) for o in OUTCOMES)


@given(
    item=st.fixed_dictionaries(
        {},
        optional={
            "code": st.one_of(st.sampled_from(_CODES), garbage),
            "status": st.one_of(st.sampled_from(_STATUSES), garbage),
            "message": st.one_of(st.sampled_from(_MESSAGES), garbage),
            "details": garbage,
        },
    )
)
def test_classify_item_is_total_and_only_success_means_unblocked(item: dict[str, Any]) -> None:
    outcome = classify_item(item)
    assert isinstance(outcome, Outcome)
    code = str(item.get("code") or "").upper()
    status = str(item.get("status") or "").lower()
    assert (outcome is Outcome.UNBLOCKED) == (code == "SUCCESS" and status in ("success", ""))
    if code not in ("SUCCESS", "INVALID_DATA", "NOT_ALLOWED"):
        assert outcome is Outcome.ERROR  # an unknown code is never a silent success or a skip


@given(batches=st.lists(zoho_answers(), max_size=6), nones=st.integers(0, 2))
def test_merge_reports_partitions_the_union_of_tasks(
    batches: list[tuple[list[str], list[dict[str, Any]]]],
    nones: int,
) -> None:
    seen: set[str] = set()
    reports: list[dict[str, Any] | None] = []
    all_ids: list[str] = []
    for ids, items in batches:
        ids = [r for r in ids if r not in seen]  # mapped tasks get disjoint ids
        seen.update(ids)
        report = UnblockReport(module="Leads", unblock_fields=["Email"])
        report.add_answer(ids, [it for it in items if _names(it) in (None, *ids)])
        reports.append(report.to_dict())
        all_ids += ids
    reports += [None] * nones + [{}]
    merged = merge_reports(reports)
    reported = [rid for lst in merged["ids"].values() for rid in lst] + merged["pending"]
    assert Counter(reported) == Counter(all_ids)
    assert merged["total"] == len(all_ids) == sum(merged["counts"].values())
    assert merged["tasks"] == len(batches)
    assert merged["calls"] == len(batches)
    # the report table the DAG prints carries the same numbers
    table = format_table(merged["counts"], total=merged["total"])
    rows = dict(line.rsplit("|", 1) for line in table.splitlines()[2:] if "|" in line and "-+-" not in line)
    assert {k.strip(): int(v.replace(",", "")) for k, v in rows.items()} == {
        **merged["counts"],
        "total": merged["total"],
    }


# -- validation and URL safety for any string ----------------------------------------------------------------------


#: A module API name as Zoho defines it (ASCII letter, then letters, digits, underscores; at most 100).
_API_NAME = r"[A-Za-z][A-Za-z0-9_]{0,99}"
_SUPPORTED = {m.lower().replace("_", ""): m for m in SUPPORTED_MODULES}
api_names = st.one_of(st.sampled_from(SUPPORTED_MODULES), st.from_regex(_API_NAME, fullmatch=True))


def _is_api_name(module: str) -> bool:
    """The rule, stated independently of the code: an API name, and not a mis-cased standard module."""
    if not re.fullmatch(_API_NAME, module):
        return False
    return _SUPPORTED.get(module.lower().replace("_", ""), module) == module


@given(module=st.one_of(api_names, st.text(max_size=12)))
@example(module="Leads\n")
@example(module="Leads/../org")
@example(module="leads")
@example(module="Bounced_Contacts")
def test_validate_module_accepts_only_api_names(module: str) -> None:
    """Half the examples are API names (they must be accepted as given), half any text (accepted only if it
    is an API name; otherwise the error names the value)."""
    if not _is_api_name(module):
        with pytest.raises(ZohoValidationError) as info:
            validate_module(module)
        assert repr(module) in str(info.value)  # the error names the value
        return
    accepted = validate_module(module)
    assert accepted == module and accepted.isascii()
    assert accepted[0].isalpha() and all(c.isalnum() or c == "_" for c in accepted)


_DIGITS = st.from_regex(r"[0-9]{1,30}", fullmatch=True)
valid_id = st.one_of(
    _DIGITS, _DIGITS.map(lambda d: f" {d}\t"), st.integers(min_value=0, max_value=10**30 - 1)
)
any_value = st.one_of(st.text(max_size=8), st.integers(), st.none(), st.floats(), st.booleans())


def _as_id(value: Any) -> str | None:
    """What a valid record id is, stated independently of the code: a str or int (not a bool) whose text,
    stripped, is 1 to 30 ASCII digits. ``None`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text if re.fullmatch(r"[0-9]{1,30}", text) else None


@given(
    values=st.one_of(
        st.lists(valid_id, max_size=6, unique_by=lambda v: str(v).strip()),  # all valid: must be accepted
        st.lists(st.one_of(valid_id, any_value), max_size=6),  # anything: accepted only if every id is valid
    )
)
@example(values=["1", " 2 ", 3, "0"])
@example(values=["1", 1])
def test_validated_record_ids_are_unique_ascii_digit_strings(values: list[Any]) -> None:
    expected = [_as_id(v) for v in values]
    if None in expected or len(set(expected)) != len(expected):
        with pytest.raises(ZohoValidationError):
            validate_record_ids(values)
        return
    ids = validate_record_ids(values)
    assert ids == expected  # accepted, each id once, as its digits, in the order given
    assert len(ids) == len(set(ids)) == len(values)
    assert all(r.isascii() and r.isdigit() and 1 <= len(r) <= 30 for r in ids)


_URL_PARTS = [
    "https://",
    "http://",
    "www.",
    "accounts.",
    "zohoapis.com",
    "zoho.eu",
    "evil.com",
    "127.0.0.1",
    "localhost",
    "[::1]",
    ".",
    "-",
    "\\",
    "/",
    "@",
    ":",
    ":443",
    ";",
    "%2f",
    "%00",
    "?",
    "#",
    "\t",
    " ",
    "\n",
    "\uff5a",  # fullwidth z
    "。",
    "xn--zoho-",
    "user:pw@",
    ".localhost",
    "0x7f000001",
]


# The rule, stated on its own (not with the code under test): a credential goes to a Zoho host over https, or to
# a loopback host: the literal name ``localhost``, an IPv4 address in 127.0.0.0/8 or the IPv6 address ::1.
# ``*.localhost`` is refused: such names go through DNS (on Kubernetes a search domain can make one a Service).
_ZOHO_REGISTRABLE_DOMAINS = [
    *(f"zoho.{tld}" for tld in ("com", "eu", "in", "com.au", "jp", "com.cn", "sa", "uk")),
    "zohocloud.ca",
    *(f"zohoapis.{tld}" for tld in ("com", "eu", "in", "com.au", "jp", "com.cn", "ca", "sa", "uk")),
]
_DNS_LABEL = "[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"


def rule_allows(scheme: str, host: str) -> bool:
    """Independent statement of the URL allow-list over the host requests/urllib3 would connect to."""
    host = host.lower()
    octets = host.split(".")
    loopback = (
        host == "localhost"
        or host in ("::1", "0:0:0:0:0:0:0:1")
        or (
            len(octets) == 4
            and octets[0] == "127"
            and all(o.isascii() and o.isdigit() and int(o) <= 255 and str(int(o)) == o for o in octets)
        )
    )
    if loopback:
        return scheme in ("http", "https")
    zoho = any(
        re.fullmatch(rf"(?:{_DNS_LABEL}\.)*{re.escape(domain)}", host) for domain in _ZOHO_REGISTRABLE_DOMAINS
    )
    return zoho and scheme == "https"


_HOSTS = st.sampled_from(
    [
        "localhost",
        "LocalHost",
        "x.localhost",
        "localhost.",
        "localhost.evil.com",
        "evil.localhost",
        "127.0.0.1",
        "127.255.255.254",
        "127.1",
        "128.0.0.1",
        "0x7f000001",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::2]",
        "10.0.0.1",
        "www.zohoapis.com",
        "accounts.zoho.eu",
        "zohoapis.com.evil.org",
        "evilzohoapis.com",
        "sandbox.zohoapis.com",
        "accounts.zohocloud.ca",
    ]
)


@given(scheme=st.sampled_from(["http", "https"]), host=_HOSTS, port=st.sampled_from(["", ":8080"]))
@example(scheme="http", host="x.localhost", port=":8080")
@example(scheme="http", host="svc.localhost", port="")
def test_url_allow_list_matches_the_rule_for_every_host_and_scheme(scheme: str, host: str, port: str) -> None:
    url = f"{scheme}://{host}{port}"
    try:
        ensure_safe_url(url, "api_domain")
    except ZohoConfigError:
        accepted = False
    else:
        accepted = True
    assert accepted == rule_allows(scheme, host.strip("[]")), url


@given(parts=st.lists(st.sampled_from(_URL_PARTS), min_size=1, max_size=8))
@example(parts=["https://", "evil.com", "\\", ".", "zohoapis.com"])
@example(parts=["https://", "evil.com", ";", ".", "zohoapis.com"])
@example(parts=["http://", "x", ".localhost"])
@example(parts=["https://", "[::1]", "https://"])
def test_an_accepted_url_sends_secrets_only_to_zoho_or_loopback(parts: list[str]) -> None:
    """Whatever urlsplit (the check) thinks, the host requests/urllib3 connects to obeys the rule."""
    url = "".join(parts)
    try:
        safe = ensure_safe_url(url, "api_domain")
    except ZohoConfigError as exc:
        assert repr(url) in str(exc)
        return
    parsed = urllib3.util.parse_url(safe + "/crm/v8/org")  # what requests connects to; it must parse
    host = (parsed.host or "").strip("[]")
    assert host, url
    assert rule_allows(parsed.scheme or "", host), (url, host)


# -- NOT_ALLOWED wording (issue 9, finding 10): Zoho's texts are not a contract --------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Email is already unblocked", Outcome.ALREADY_UNBLOCKED),
        ("EMAIL ALREADY UNBLOCKED.", Outcome.ALREADY_UNBLOCKED),
        ("email is already-unblocked", Outcome.ALREADY_UNBLOCKED),
        ("Email is already\nunblocked", Outcome.ALREADY_UNBLOCKED),
        ("The email was unblocked already", Outcome.ALREADY_UNBLOCKED),
        ("Cannot unblock, email has been unblocked 5 times already", Outcome.LIMIT_REACHED),
        ("Cannot unblock, email has been unblocked five times already", Outcome.LIMIT_REACHED),
        ("Cannot unblock; email has been unblocked 5-times already!", Outcome.LIMIT_REACHED),
        ("cannot unblock - unblocked FIVE times", Outcome.LIMIT_REACHED),
        ("Unblock limit (5) reached for this email", Outcome.LIMIT_REACHED),
        ("Cannot unblock, Email is blocked permanently", Outcome.PERMANENTLY_BLOCKED),
        ("Cannot unblock, email is permanently blocked", Outcome.PERMANENTLY_BLOCKED),
        ("cannot unblock: email is PERMANENTLY-BLOCKED", Outcome.PERMANENTLY_BLOCKED),
        ("Record is locked or in an approval process", Outcome.NOT_ALLOWED),
        ("EMAIL, SECONDARY_EMAIL field not available for module", Outcome.NOT_ALLOWED),
        ("This address cannot be released right now", Outcome.NOT_ALLOWED),
    ],
)
def test_not_allowed_wording_variants_classify_alike(message: str, expected: Outcome) -> None:
    item = {"code": "NOT_ALLOWED", "message": message, "status": "error", "details": {"id": "1"}}
    assert classify_item(item) is expected


@pytest.mark.parametrize(
    "message",
    ["This address cannot be released right now", "", "Unblocking is not allowed for this address"],
)
def test_unrecognised_not_allowed_wording_is_logged_with_the_raw_text(
    message: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    report = UnblockReport(module="Leads", unblock_fields=["Email"])
    ids = ["11", "12"]
    items = [
        {"code": "NOT_ALLOWED", "message": message, "status": "error", "details": {"id": r}} for r in ids
    ]
    report.add_answer(ids, items)
    assert report.ids["not_allowed"] == ids
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "NOT_ALLOWED" in r.getMessage()]
    assert len(warnings) == 1  # one line per wording and batch, not one per record
    assert repr(message) in warnings[0].getMessage() and "2 record" in warnings[0].getMessage()


def test_recognised_not_allowed_wordings_log_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
    messages = [
        "Email is already unblocked",
        "Cannot unblock, email has been unblocked 5 times already",
        "Cannot unblock, Email is blocked permanently",
        "Record is locked or in an approval process",
    ]
    ids = [str(i) for i in range(1, len(messages) + 1)]
    items = [
        {"code": "NOT_ALLOWED", "message": m, "details": {"id": r}}
        for m, r in zip(messages, ids, strict=True)
    ]
    UnblockReport(module="Leads", unblock_fields=["Email"]).add_answer(ids, items)
    assert [r for r in caplog.records if r.levelname == "WARNING"] == []


@given(answer=zoho_answers())
@example(answer=(["1", "2", "3"], [{"code": "SUCCESS", "status": "success"}] * 2))
def test_anonymous_answers_are_placed_by_position_only_when_zoho_answered_every_id(
    answer: tuple[list[str], list[dict[str, Any]]],
) -> None:
    ids, items = answer
    anonymous = [
        it
        for it in items
        if _names(it) is None
        and not (
            isinstance(it.get("details"), dict)
            and str(it["details"].get("json_path", "")).startswith("$.ids[")
        )
    ]
    for rid, item in match_items(ids, items):
        if any(item is it for it in anonymous):
            assert len(items) == len(ids), (
                f"{rid} was given an anonymous answer out of {len(items)} for {len(ids)}"
            )
            assert item is items[ids.index(rid)]  # and then only the one at its own position
