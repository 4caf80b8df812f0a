"""The Zoho CRM API protocol: requests with timeouts and bounded retries, answer classification, paging.

Free of Airflow so it can be tested and reused alone; the hook builds it from a connection.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import requests
import tenacity

from airflow_provider_zohocrm.zoho.auth import (
    DATA_CENTER_FIX,
    TokenManager,
    ZohoTokenAuth,
    token_from_request,
)
from airflow_provider_zohocrm.zoho.coql_paging import keyset_query
from airflow_provider_zohocrm.zoho.credits import CreditCounter, call_credits
from airflow_provider_zohocrm.zoho.datacenters import DEFAULT_API_VERSION
from airflow_provider_zohocrm.zoho.errors import (
    ZohoAuthError,
    ZohoCRMError,
    ZohoPageTokenExpiredError,
    ZohoRateLimitError,
    ZohoRedirectError,
    ZohoRequestError,
    ZohoResponseError,
    ZohoScopeError,
    ZohoServerError,
    ZohoTransportError,
    ZohoValidationError,
)
from airflow_provider_zohocrm.zoho.transport import describe_transport_error, host_of, redirect_message

# Validation used to live here; "X as X" keeps the old import paths working (an explicit re-export).
from airflow_provider_zohocrm.zoho.validation import SUPPORTED_MODULES as SUPPORTED_MODULES
from airflow_provider_zohocrm.zoho.validation import coql_module as coql_module
from airflow_provider_zohocrm.zoho.validation import validate_coql as validate_coql
from airflow_provider_zohocrm.zoho.validation import validate_module as validate_module
from airflow_provider_zohocrm.zoho.validation import validate_unblock_call

log = logging.getLogger(__name__)

#: Zoho's cap on ``per_page`` for record listings, and on rows per COQL call.
MAX_PER_PAGE = 200
MAX_COQL_LIMIT = 2000
#: Records reachable with ``page`` alone; beyond, Zoho wants ``page_token``.
DISCRETE_PAGING_LIMIT = 2000
#: COQL offset + limit cap (v7+). Not a cap on what ``iter_coql`` reads: it pages by record id, never by offset.
COQL_MAX_ROWS = 100_000
#: Records Get Records reaches with ``page_token`` in one listing (Zoho's Get Records docs and the Kaizen #60
#: post: "For more than 2000 and up to a maximum of 100,000 records, use the page_token parameter").
PAGE_TOKEN_RECORD_CAP = 100_000


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter for 429 (Zoho sends no Retry-After), 5xx and transport
    errors. ``max_attempts`` counts the first try."""

    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("RetryPolicy needs max_attempts >= 1 and non-negative backoff values")


@dataclass(frozen=True)
class ZohoResponse:
    """A classified answer: HTTP status, parsed JSON body (``None`` for 204) and headers."""

    status: int
    body: Any
    headers: dict[str, str]


@dataclass(frozen=True)
class Page:
    """One page of a listing: its rows, and whether Zoho says more follow."""

    rows: list[dict[str, Any]]
    more: bool

    @property
    def ids(self) -> list[str]:
        """The ids of the rows that have one, in order."""
        return [str(row["id"]) for row in self.rows if "id" in row]


class _Retryable(Exception):
    """Internal: a failure worth another try; carries the error to raise if tries run out."""

    def __init__(self, error: ZohoCRMError) -> None:
        super().__init__(str(error))
        self.error = error


_SCOPE_HINT = {
    "unblock": "ZohoCRM.send_mail.{module}.CREATE (v7/v8 docs) or ZohoCRM.modules.{module}.UPDATE (v6 docs)",
    "records": "ZohoCRM.modules.{module}.READ",
    "coql": "ZohoCRM.coql.READ and ZohoCRM.modules.{module}.READ",
    "org": "ZohoCRM.org.READ",
    "emails": "ZohoCRM.modules.emails.READ and ZohoCRM.modules.{module}.READ",
    "views": "ZohoCRM.settings.custom_views.READ (or ZohoCRM.settings.ALL)",
    "modules": "ZohoCRM.settings.modules.READ (or ZohoCRM.settings.ALL)",
}


class ZohoCRMClient:
    """Talks to one Zoho CRM org.

    :param tokens: where access tokens come from (and the API domain with them).
    :param session: a requests session (the hook passes HttpHook's; tests may pass their own).
    :param api_version: ``v8`` unless the org needs an older one.
    :param timeout: seconds, or (connect, read) seconds, for every request.
    :param retry: how 429, 5xx and transport errors are retried.
    """

    def __init__(
        self,
        tokens: TokenManager,
        session: requests.Session | None = None,
        *,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float | tuple[float, float] = (10.0, 60.0),
        retry: RetryPolicy | None = None,
    ) -> None:
        self.tokens = tokens
        self.session = session or requests.Session()
        self.api_version = api_version
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.auth = ZohoTokenAuth(tokens)
        #: Zoho's ``X-API-CREDITS-REMAINING`` from the latest answer that had it (``None`` until half the org's
        #: daily credits are used).
        self.last_credits_remaining: int | None = None
        self._credits = CreditCounter()
        #: Zoho's clock minus ours, from the ``Date`` header of the latest answer (None before any answer).
        self.server_clock_offset: float | None = None
        #: a digest of the access token Zoho's API last accepted (never the token: this object gets printed)
        self._accepted = b""

    @property
    def credits_spent(self) -> int:
        """API credits this client's calls cost so far, by the weights in :mod:`.credits` (an estimate of what
        Zoho books: see there). Thread-safe."""
        return self._credits.spent

    def server_time(self) -> float:
        """Now on Zoho's clock (epoch seconds): the local clock corrected by the ``Date`` header of the latest
        answer. Bounce times come from Zoho's clock, so their age is measured on it (a worker's clock may be
        off; the emulator's clock can be advanced). Before any answer: the local clock. Resolution 1 s."""
        return time.time() + (self.server_clock_offset or 0.0)

    def __repr__(self) -> str:
        return f"ZohoCRMClient(api_version={self.api_version!r}, tokens={self.tokens!r})"

    def _note_server_clock(self, date: str | None) -> None:
        if not date:
            return
        try:
            at = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError):
            return
        offset = at - time.time()
        # the header has 1 s resolution: a difference within 2 s is our own clock, not skew
        self.server_clock_offset = offset if abs(offset) > 2.0 else 0.0

    # -- transport ------------------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The full URL of ``path`` (below ``/crm/{version}/``) on the org's API domain."""
        return f"{self.tokens.get_token().api_domain}/crm/{self.api_version}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        purpose: str = "",
        module: str = "",
        data_errors_ok: bool | str = False,
    ) -> ZohoResponse:
        """Send one API call, retrying what is safe to retry, and classify the answer.

        :param data_errors_ok: a 4xx answer with a ``data`` list (unblock's per-record errors) is returned
            instead of raised; given a record id, so is a bare per-record item about that record.
        """
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retry.max_attempts),
            wait=tenacity.wait_random_exponential(
                multiplier=self.retry.backoff_base, max=self.retry.backoff_max
            ),
            retry=tenacity.retry_if_exception_type(_Retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(method, path, params, json, purpose, module, data_errors_ok)
        except _Retryable as exc:
            attempts = self.retry.max_attempts
            exc.error.message += f" (gave up after {attempts} attempt{'s' if attempts != 1 else ''})"
            raise exc.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _log_retry(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("Zoho call failed (%s); retry %d in %.1fs", exc, state.attempt_number, wait)

    def _send_once(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        json: Any,
        purpose: str,
        module: str,
        data_errors_ok: bool | str,
    ) -> ZohoResponse:
        first_401 = ""
        for auth_try in range(2):  # on INVALID_TOKEN: drop the token, refresh once, send again
            url = self.url(path)
            try:
                # Never follow a redirect: requests would resend the call (and, to the same host, the access
                # token) to the Location; a 3xx is classified as an error instead.
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    auth=self.auth,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                cause = describe_transport_error(exc, host_of(url), self.timeout)
                raise _Retryable(
                    ZohoTransportError(f"Zoho call {method} {_redact_path(path)} failed: {cause}")
                ) from exc
            body, parse_error = _parse_body(response)
            code, message, details = _error_fields(body)
            status = response.status_code
            if status < 300 or (400 <= status < 500 and status not in (401, 429)):
                self._credits.add(call_credits(method, path, params=params, json=json))  # Zoho processed it
            used = token_from_request(response.request)
            digest = hashlib.blake2b((used or "").encode(), digest_size=16).digest()
            if status == 401 and code in ("INVALID_TOKEN", "AUTHENTICATION_FAILURE"):
                first_401 = first_401 or f"{code}: {message}"
                if used:  # replaced once (by one task for all); a replacement rejected at once is recorded
                    accepted = digest == self._accepted
                    self.tokens.invalidate(used, first_401, final=auth_try == 1, accepted=accepted)
                if auth_try == 0:
                    continue
                raise ZohoAuthError(
                    f"Zoho rejected the access token on {method} {_redact_path(path)} ({first_401}): a token from"
                    " one data center's accounts server is invalid on another's API domain.",
                    status=401,
                    code=code,
                    fix=DATA_CENTER_FIX,
                )
            self._accepted = digest
            return self._classify(
                response,
                body,
                parse_error,
                code,
                message,
                details,
                method,
                path,
                purpose,
                module,
                data_errors_ok,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _classify(
        self,
        response: requests.Response,
        body: Any,
        parse_error: str | None,
        code: str | None,
        message: str,
        details: dict[str, Any],
        method: str,
        path: str,
        purpose: str,
        module: str,
        data_errors_ok: bool | str,
    ) -> ZohoResponse:
        status = response.status_code
        headers = dict(response.headers)
        where = f"{method} {_redact_path(path)}"
        if status == 429:
            raise _Retryable(
                ZohoRateLimitError(
                    f"Zoho's API limit was hit on {where} (concurrency or daily credits): lower the pool"
                    " size or parallelism, or spread the job over time.",
                    status=status,
                    code=code or "TOO_MANY_REQUESTS",
                    details=details,
                )
            )
        if status >= 500:
            raise _Retryable(
                ZohoServerError(
                    f"Zoho had a server error on {where}: {message or response.reason}",
                    status=status,
                    code=code,
                    details=details,
                )
            )
        self._note_server_clock(response.headers.get("Date"))
        credits = response.headers.get(
            "X-API-CREDITS-REMAINING", ""
        )  # sent once half the day's credits are used
        if credits.isdigit():
            self.last_credits_remaining = int(credits)
        if 300 <= status < 400:
            raise ZohoRedirectError(
                redirect_message(status, response.headers.get("Location"), response.url, where),
                status=status,
            )
        if status == 204:
            return ZohoResponse(status, None, headers)
        if parse_error is not None:
            # A 2xx that is not JSON is a broken answer (a proxy page, a cut body): safe to ask again, since
            # every call we make is idempotent in effect (a repeated unblock answers "already unblocked").
            error = ZohoResponseError(
                f"Zoho answered {where} with HTTP {status} but {parse_error}", status=status
            )
            if status < 300:
                raise _Retryable(error)
            raise error
        if status < 300:
            return ZohoResponse(status, body, headers)
        if data_errors_ok and _is_record_answer(body, data_errors_ok):
            return ZohoResponse(status, body, headers)
        if status == 401 and code == "OAUTH_SCOPE_MISMATCH":
            hint = _SCOPE_HINT.get(purpose, "the scope this call needs").format(module=module or "{module}")
            raise ZohoScopeError(
                f"Zoho refused {where}: the connection's refresh token lacks the scope it needs.",
                status=status,
                code=code,
                details=details,
                fix=f"Generate a new refresh token whose scopes include {hint} (README: 'Getting a refresh"
                " token') and put it in the connection's extra refresh_token.",
            )
        if status == 401:
            raise ZohoAuthError(
                f"Zoho refused the credentials on {where}: {message}",
                status=status,
                code=code,
                details=details,
            )
        if code == "INVALID_DATA" and details.get("param_name") == "page_token":
            raise ZohoPageTokenExpiredError(
                message or "page token expired", status=status, code=code, details=details
            )
        hint = ""
        if code == "INVALID_MODULE":
            hint = " Use the module's API name (Settings > Developer Hub > APIs), e.g. Leads, Contacts."
        raise ZohoRequestError(
            f"Zoho refused {where}: {message or response.reason}.{hint}",
            status=status,
            code=code,
            details=details,
        )

    # -- reading ------------------------------------------------------------------------------------------

    def get_org(self) -> dict[str, Any]:
        """The org's details: the cheapest call that proves token, data center and API domain."""
        response = self.request("GET", "org", purpose="org")
        org = (response.body or {}).get("org") if isinstance(response.body, dict) else None
        if not isinstance(org, list) or not org:
            raise ZohoResponseError("Zoho's org answer has no 'org' list", status=response.status)
        return dict(org[0])

    def iter_records(
        self,
        module: str,
        *,
        fields: Sequence[str] = ("id",),
        cvid: str | None = None,
        per_page: int = MAX_PER_PAGE,
        max_restarts: int = 3,
    ) -> Iterator[dict[str, Any]]:
        """Yield every record of ``module`` (of custom view ``cvid`` if given), each once.

        Pages with ``page`` while Zoho allows and with ``page_token`` beyond 2,000 records. An expired page
        token restarts the scan and skips the records already yielded, so nothing is lost or repeated.
        """
        validate_module(module)
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ZohoValidationError(f"per_page must be between 1 and {MAX_PER_PAGE}, not {per_page}")
        if cvid is not None and not str(cvid).isdigit():
            raise ZohoValidationError(f"cvid must be the numeric id of a custom view, not {cvid!r}")
        field_list = ",".join(dict.fromkeys(["id", *fields]))
        seen: set[str] = set()
        restarts = 0
        while True:
            try:
                for record in self._scan_records(module, field_list, cvid, per_page):
                    record_id = str(record.get("id"))
                    if record_id in seen:
                        continue
                    seen.add(record_id)
                    yield record
                return
            except ZohoPageTokenExpiredError:
                restarts += 1
                if restarts > max_restarts:
                    raise
                log.warning("Zoho page token expired after %d records; rescanning, skipping those", len(seen))

    def _scan_records(
        self, module: str, field_list: str, cvid: str | None, per_page: int
    ) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"fields": field_list, "per_page": per_page}
        if cvid:
            params["cvid"] = cvid
        page = 1
        page_token: str | None = None
        served = 0
        while True:
            call = dict(params)
            if page_token:
                call["page_token"] = page_token
            else:
                call["page"] = page
            response = self.request("GET", module, params=call, purpose="records", module=module)
            if response.status == 204 or response.body is None:
                return
            data, info = _data_and_info(response, f"GET {module}")
            yield from data
            served += len(data)
            if not info.get("more_records"):
                return
            page_token = info.get("next_page_token") or None
            page += 1
            if page_token:
                continue
            what = f"custom view {cvid} of {module}" if cvid else f"the {module} module"
            if served >= PAGE_TOKEN_RECORD_CAP:
                raise ZohoRequestError(
                    f"Zoho's Get Records API reads at most {PAGE_TOKEN_RECORD_CAP:,} records of one listing"
                    f" (its documented page_token cap), and {what} holds more: {served:,} were read. Read it"
                    " with a COQL source instead ('coql_query' with the view's criteria, or 'all': true for every"
                    " record with an email), which pages by record id with no cap.",
                    status=response.status,
                    code="LIMIT_REACHED",
                )
            if page * per_page > DISCRETE_PAGING_LIMIT:
                raise ZohoResponseError(
                    f"Zoho says more records of {what} follow after {served:,} but gave no next_page_token,"
                    f" and 'page' alone reaches only {DISCRETE_PAGING_LIMIT:,} records. Use a COQL source"
                    " ('coql_query', or 'all': true), which pages by record id.",
                    status=response.status,
                )

    def iter_coql(self, query: str, *, page_size: int = MAX_COQL_LIMIT) -> Iterator[dict[str, Any]]:
        """Yield every row of a COQL ``select`` (without ``limit``/``offset``), each record once, however many.

        Pages by record id (``… and id > last order by id limit 2000``, see :mod:`.coql_paging`), never by
        offset: ⌈N/page_size⌉ calls, no 100,000-row cap, and records added or deleted during the scan neither
        shift nor repeat a row. A query that cannot be read in id order is refused before any call.
        """
        plan = keyset_query(query)
        if not 1 <= page_size <= MAX_COQL_LIMIT:
            raise ZohoValidationError(
                f"COQL page_size must be between 1 and {MAX_COQL_LIMIT}, not {page_size}"
            )
        module = coql_module(query)
        last: int | None = None
        while True:
            body = {"select_query": plan.page(last, page_size)}
            response = self.request("POST", "coql", json=body, purpose="coql", module=module)
            if response.status == 204 or response.body is None:
                return
            data, info = _data_and_info(response, "POST coql")
            for row in data:
                row_id = _row_id(row)
                if last is not None and (row_id <= last if not plan.descending else row_id >= last):
                    # never loop or repeat: Zoho must answer past the cursor, in id order
                    raise ZohoResponseError(
                        f"Zoho's COQL answer is not in record-id order after id {last} (got {row_id}):"
                        " cannot page it by id."
                    )
                last = row_id
                yield row
            if not info.get("more_records"):
                return
            if not data:
                raise ZohoResponseError("Zoho's COQL answer says more_records but has no rows")

    def records_page(
        self,
        module: str,
        *,
        fields: Sequence[str] = ("id",),
        cvid: str | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> Page:
        """The first page of ``module``'s records (of custom view ``cvid``): one call, for a sample or a count
        that needs no more (:meth:`iter_records` reads them all)."""
        validate_module(module)
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ZohoValidationError(f"per_page must be between 1 and {MAX_PER_PAGE}, not {per_page}")
        if cvid is not None and not str(cvid).isdigit():
            raise ZohoValidationError(f"cvid must be the numeric id of a custom view, not {cvid!r}")
        params: dict[str, Any] = {"fields": ",".join(dict.fromkeys(["id", *fields])), "per_page": per_page}
        if cvid:
            params["cvid"] = cvid
        params["page"] = 1
        response = self.request("GET", module, params=params, purpose="records", module=module)
        if response.status == 204 or response.body is None:
            return Page([], False)
        data, info = _data_and_info(response, f"GET {module}")
        return Page(data, bool(info.get("more_records")))

    def coql_page(self, query: str, *, limit: int = MAX_COQL_LIMIT) -> Page:
        """The first ``limit`` rows of a COQL ``select`` (without ``limit``/``offset``): one call
        (:meth:`iter_coql` reads them all)."""
        query = validate_coql(query)
        if not 1 <= limit <= MAX_COQL_LIMIT:
            raise ZohoValidationError(f"COQL limit must be between 1 and {MAX_COQL_LIMIT}, not {limit}")
        body = {"select_query": f"{query} limit {limit} offset 0"}
        response = self.request("POST", "coql", json=body, purpose="coql", module=coql_module(query))
        if response.status == 204 or response.body is None:
            return Page([], False)
        data, info = _data_and_info(response, "POST coql")
        return Page(data, bool(info.get("more_records")))

    # -- unblock email ----------------------------------------------------------------------------------------

    def unblock_email(
        self, module: str, record_id: str, unblock_fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Unblock one record (the single-record endpoint); returns its per-record item(s)."""
        module, (record_id,), unblock_fields = validate_unblock_call(module, [record_id], unblock_fields)
        response = self.request(
            "POST",
            f"{module}/{record_id}/actions/unblock_email",
            json={"unblock_fields": list(unblock_fields)},
            purpose="unblock",
            module=module,
            data_errors_ok=record_id,
        )
        body = response.body
        # The docs show {"data": [item]}; the v8 OpenAPI example the bare item: accept both.
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            return [dict(item) for item in body["data"]]
        if isinstance(body, dict) and "code" in body and "status" in body:
            return [body]
        if response.status >= 400:
            raise ZohoRequestError(f"Zoho refused to unblock record {record_id}", status=response.status)
        raise ZohoResponseError(
            "Zoho's unblock answer has neither 'data' nor a record item", status=response.status
        )

    def unblock_emails(
        self, module: str, record_ids: Sequence[str], unblock_fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Unblock up to 500 records in one call (the bulk endpoint); returns the per-record items in order."""
        module, record_ids, unblock_fields = validate_unblock_call(module, record_ids, unblock_fields)
        response = self.request(
            "POST",
            f"{module}/actions/unblock_email",
            json={"unblock_fields": list(unblock_fields), "ids": list(record_ids)},
            purpose="unblock",
            module=module,
            data_errors_ok=True,
        )
        body = response.body
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ZohoResponseError(
                f"Zoho's bulk unblock answer (HTTP {response.status}) has no 'data' list",
                status=response.status,
            )
        return [dict(item) if isinstance(item, dict) else {"item": item} for item in body["data"]]


# -- answer parsing -----------------------------------------------------------------------------------------


def _parse_body(response: requests.Response) -> tuple[Any, str | None]:
    if response.status_code == 204 or not response.content:
        return None, (None if response.status_code == 204 else "an empty body")
    content_type = response.headers.get("Content-Type", "")
    try:
        return response.json(), None
    except ValueError:
        kind = (
            "an HTML page" if "html" in content_type or response.text.lstrip().startswith("<") else "not JSON"
        )
        return None, kind


def _error_fields(body: Any) -> tuple[str | None, str, dict[str, Any]]:
    if not isinstance(body, dict):
        return None, "", {}
    details = body.get("details")
    return (
        str(body["code"]) if body.get("code") else None,
        str(body.get("message") or ""),
        details if isinstance(details, dict) else {},
    )


def _data_and_info(response: ZohoResponse, where: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    body = response.body
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ZohoResponseError(f"Zoho's answer to {where} has no 'data' list", status=response.status)
    info = body.get("info")
    return body["data"], info if isinstance(info, dict) else {}


def _row_id(row: Any) -> int:
    """A COQL row's record id as an integer (Zoho sends it as a string of up to 19 digits)."""
    value = row.get("id") if isinstance(row, dict) else None
    text = str(value) if value is not None else ""
    if not text.isdigit():
        raise ZohoResponseError(f"A COQL row has no record id to page by: {value!r}")
    return int(text)


def _is_record_answer(body: Any, record_id: bool | str) -> bool:
    """A 4xx body that carries per-record results: ``{"data": [...]}``, or (single-record endpoint, flat form)
    an item whose ``details.id`` is the record's — unlike a call-level error, which names no record."""
    if not isinstance(body, dict):
        return False
    if isinstance(body.get("data"), list):
        return True
    details = body.get("details")
    return (
        isinstance(record_id, str)
        and isinstance(details, dict)
        and str(details.get("id")) == record_id
        and "code" in body
    )


def _redact_path(path: str) -> str:
    return path.split("?", 1)[0]
