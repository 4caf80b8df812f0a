"""Zoho's Add Tags API: tag records so that the people who must act on them find them in a CRM list view.

``POST /crm/{version}/{module}/actions/add_tags`` with ``{"tags": [{"name": …}], "ids": [… ≤ 500],
"over_write": false}`` (Zoho's v8 docs and OpenAPI spec ``tags_actions.json``; the v8 SDK sends ``ids`` as a
list too). The answer is ``{"data": [item, …]}`` with one item per record: ``code`` ``SUCCESS`` and
``details.id``/``details.tags``, or an error such as ``RECORD_LOCKED`` (``details.id``), ``INVALID_DATA``
(``details.id`` or a ``json_path`` such as ``$.ids[3]``) or ``LIMIT_EXCEEDED`` (at most 10 tags per record,
100 per module). ``over_write: false`` keeps the tags a record already has, so tagging twice is harmless.

No Airflow here: the hook and the operator call :func:`add_tags` / :func:`tag_records` with their client.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_zohocrm.zoho.errors import (
    ZohoCRMError,
    ZohoResponseError,
    ZohoScopeError,
    ZohoValidationError,
)
from airflow_provider_zohocrm.zoho.validation import validate_module, validate_record_ids

if TYPE_CHECKING:
    from airflow_provider_zohocrm.zoho.client import ZohoCRMClient

log = logging.getLogger(__name__)

#: Zoho's maximum of record ids per Add Tags call.
MAX_IDS_PER_TAG_CALL = 500
#: Zoho keeps at most 10 tags on a record; asking for more in one call can never succeed.
MAX_TAGS_PER_RECORD = 10
#: ``TagsNested.name`` has ``maxLength: 25`` in Zoho's v8 OpenAPI spec.
MAX_TAG_NAME_LENGTH = 25
#: What a refresh token needs for Add Tags. Zoho's v8 docs page names the module scopes; the OpenAPI spec's
#: security section names ``ZohoCRM.settings.tags.all``. They disagree, so the hint names both.
TAG_SCOPE_HINT = (
    "ZohoCRM.modules.{module}.ALL (or .WRITE/.CREATE) or ZohoCRM.modules.ALL (Zoho's v8 Add Tags docs), and"
    " ZohoCRM.settings.tags.ALL (Zoho's OpenAPI spec): grant both to be safe"
)

TagOutcome = Literal["tagged", "locked", "invalid_record", "limit_exceeded", "error"]
TAG_OUTCOMES: tuple[TagOutcome, ...] = ("tagged", "locked", "invalid_record", "limit_exceeded", "error")

_JSON_PATH_INDEX_RE = re.compile(r"^\$\.ids\[(\d+)\]$")
_TAG_NAME_FORBIDDEN = re.compile(r"[,\x00-\x1f]")  # v2 joined tag names with commas; control chars never fit


@dataclass
class TagReport:
    """One item per record id, in input order, and how many calls it took.

    Each item: ``{"id", "outcome", "code", "message"}``, plus ``"tags"`` (the record's tag names, as Zoho
    reported them) when tagged. ``outcome`` is one of :data:`TAG_OUTCOMES`.
    """

    items: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(item["outcome"] for item in self.items)
        return {outcome: counted.get(outcome, 0) for outcome in TAG_OUTCOMES}

    def ids(self, outcome: TagOutcome) -> list[str]:
        return [item["id"] for item in self.items if item["outcome"] == outcome]


def validate_tag_names(tag_names: Any) -> list[str]:
    """Tag names as Zoho takes them: 1 to 10 distinct, non-empty names of at most 25 characters, no commas."""
    if isinstance(tag_names, str):
        tag_names = [tag_names]
    if not isinstance(tag_names, (list, tuple)) or not tag_names:
        raise ZohoValidationError(f"Give one or more tag names, not {tag_names!r}.")
    names: list[str] = []
    for raw in tag_names:
        name = raw.strip() if isinstance(raw, str) else raw
        if not isinstance(name, str) or not name:
            raise ZohoValidationError(f"Invalid tag name {raw!r}: a tag name is a non-empty string.")
        if len(name) > MAX_TAG_NAME_LENGTH or _TAG_NAME_FORBIDDEN.search(name):
            raise ZohoValidationError(
                f"Invalid tag name {name!r}: Zoho takes at most {MAX_TAG_NAME_LENGTH} characters, without"
                " commas."
            )
        if name.lower() in (n.lower() for n in names):
            raise ZohoValidationError(f"Tag name {name!r} is listed twice.")
        names.append(name)
    if len(names) > MAX_TAGS_PER_RECORD:
        raise ZohoValidationError(
            f"{len(names)} tag names: Zoho keeps at most {MAX_TAGS_PER_RECORD} tags on a record."
        )
    return names


def tag_calls(n_ids: int, batch_size: int = MAX_IDS_PER_TAG_CALL) -> int:
    """Calls needed to tag ``n_ids`` records: ⌈n / batch_size⌉ (0 for none)."""
    return math.ceil(n_ids / batch_size) if n_ids > 0 else 0


def add_tags(
    client: ZohoCRMClient,
    module: str,
    ids: Sequence[str],
    tag_names: Sequence[str] | str,
    *,
    batch_size: int = MAX_IDS_PER_TAG_CALL,
) -> list[dict[str, Any]]:
    """Add ``tag_names`` to every record of ``ids`` (≤ 500 per call, existing tags kept); one item per id.

    See :func:`tag_records`, which also says how many calls were made.
    """
    return tag_records(client, module, ids, tag_names, batch_size=batch_size).items


def tag_records(
    client: ZohoCRMClient,
    module: str,
    ids: Sequence[str],
    tag_names: Sequence[str] | str,
    *,
    batch_size: int = MAX_IDS_PER_TAG_CALL,
) -> TagReport:
    """Add ``tag_names`` to every record of ``ids``, ``batch_size`` (≤ 500) ids per call, existing tags kept.

    Bad input raises :class:`ZohoValidationError` before any call. After that nothing raises: every id ends in
    exactly one item, so a tag failure can never hide what happened before it (the unblock results). A call
    that fails as a whole (scope, retries exhausted, …) gives each id of its batch outcome ``error`` with the
    reason, and the later batches are not sent (their ids get the same reason): one more call would fail the
    same way.
    """
    module = validate_module(module)
    record_ids = validate_record_ids(ids)
    names = validate_tag_names(tag_names)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise ZohoValidationError(f"batch_size must be a whole number, not {batch_size!r}.")
    if not 1 <= batch_size <= MAX_IDS_PER_TAG_CALL:
        raise ZohoValidationError(
            f"batch_size must be from 1 to {MAX_IDS_PER_TAG_CALL} (Zoho's limit per Add Tags call),"
            f" not {batch_size}."
        )
    report = TagReport()
    body_tags = [{"name": name} for name in names]
    for start in range(0, len(record_ids), batch_size):
        batch = record_ids[start : start + batch_size]
        report.calls += 1
        try:
            response = client.request(
                "POST",
                f"{module}/actions/add_tags",
                json={"tags": body_tags, "ids": batch, "over_write": False},
                purpose="tags",
                module=module,
                data_errors_ok=True,
            )
            items = classify_tag_answer(batch, response.body)
        except ZohoCRMError as exc:
            reason = _call_failure(exc, module)
            log.warning("Add Tags call %d failed: %s", report.calls, reason)
            outcome: TagOutcome = "limit_exceeded" if exc.code == "LIMIT_EXCEEDED" else "error"
            code = exc.code or type(exc).__name__
            report.items.extend(_item(rid, outcome, code, reason) for rid in record_ids[start:])
            return report
        report.items.extend(items)
    return report


def classify_tag_answer(ids: Sequence[str], body: Any) -> list[dict[str, Any]]:
    """One item per id of ``ids`` (in order) from Zoho's answer to an Add Tags call.

    Items are matched by ``details.id``, else by ``details.json_path`` (``$.ids[i]``), else by position when
    the answer has exactly one item per id. An id without an answer is an ``error``: never silently tagged.
    """
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        code = body.get("code") if isinstance(body, dict) else None
        if code == "LIMIT_EXCEEDED":  # call-level: the module already has 100 tags
            message = str(body.get("message") or "tag limit exceeded")
            return [_item(rid, "limit_exceeded", "LIMIT_EXCEEDED", message) for rid in ids]
        raise ZohoResponseError("Zoho's Add Tags answer has no 'data' list")
    data = [item if isinstance(item, dict) else {} for item in body["data"]]
    position = {rid: i for i, rid in enumerate(ids)}
    found: dict[str, dict[str, Any]] = {}
    for index, raw in enumerate(data):
        details = _details(raw)
        rid = str(details.get("id")) if details.get("id") is not None else None
        if rid not in position:
            match = _JSON_PATH_INDEX_RE.match(str(details.get("json_path") or ""))
            if match and int(match.group(1)) < len(ids):
                rid = ids[int(match.group(1))]
            elif len(data) == len(ids):
                rid = ids[index]
            else:
                continue
        if rid not in found:
            found[rid] = _classify_item(rid, raw)
    return [
        found.get(rid) or _item(rid, "error", "NO_ANSWER", "Zoho's answer named no result for it")
        for rid in ids
    ]


def _classify_item(record_id: str, raw: dict[str, Any]) -> dict[str, Any]:
    code = str(raw.get("code") or "")
    message = str(raw.get("message") or "")
    status = str(raw.get("status") or "").lower()
    details = _details(raw)
    if code == "SUCCESS" or (status == "success" and not code):
        tags = [
            str(t.get("name")) for t in details.get("tags") or [] if isinstance(t, dict) and t.get("name")
        ]
        return {**_item(record_id, "tagged", code or "SUCCESS", message), "tags": tags}
    if code == "RECORD_LOCKED":
        return _item(record_id, "locked", code, message)
    if code == "LIMIT_EXCEEDED":
        return _item(record_id, "limit_exceeded", code, message)
    points_at_record = str(details.get("json_path") or "").startswith("$.ids") or (
        str(details.get("id")) == record_id and "json_path" not in details
    )
    if code == "INVALID_DATA" and points_at_record:  # no such record (deleted, merged, other module)
        return _item(record_id, "invalid_record", code, message)
    return _item(record_id, "error", code or "UNKNOWN", message or "Zoho gave no message")


def _details(raw: dict[str, Any]) -> dict[str, Any]:
    details = raw.get("details")
    return details if isinstance(details, dict) else {}


def _item(record_id: str, outcome: TagOutcome, code: str, message: str) -> dict[str, Any]:
    return {"id": record_id, "outcome": outcome, "code": code, "message": message}


def _call_failure(exc: ZohoCRMError, module: str) -> str:
    if isinstance(exc, ZohoScopeError):
        return (
            "The refresh token lacks the scope for Add Tags: generate one that includes "
            + TAG_SCOPE_HINT.format(module=module)
            + "."
        )
    if exc.code == "LIMIT_EXCEEDED":
        return (
            f"{exc} Zoho keeps at most 100 tags per module: delete unused {module} tags (Setup > Tags) or reuse"
            " an existing tag name."
        )
    return str(exc)
