"""ZohoCRMHook: adapts an Airflow ``zohocrm`` connection to the Zoho protocol client."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import requests
from airflow.providers.http.hooks.http import HttpHook

from airflow_provider_zohocrm import CONN_FIELDS, UI_FIELD_BEHAVIOUR
from airflow_provider_zohocrm.hooks.failures import FailureReportingClient
from airflow_provider_zohocrm.hooks.token_store import AirflowVariableTokenStore
from airflow_provider_zohocrm.zoho.auth import FileTokenStore, OAuthCredentials, TokenManager, TokenStore
from airflow_provider_zohocrm.zoho.client import RetryPolicy, ZohoCRMClient
from airflow_provider_zohocrm.zoho.datacenters import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    Endpoints,
    resolve_endpoints,
)
from airflow_provider_zohocrm.zoho.emails import BounceCheck, CallBudget, check_bounce, iter_emails
from airflow_provider_zohocrm.zoho.errors import ZohoConfigError, ZohoCRMError
from airflow_provider_zohocrm.zoho.preflight import (
    DEFAULT_SAMPLE,
    MISSING_CONNECTION_FIX,
    PreflightReport,
    PreflightRequest,
    connection_checks,
    run_preflight,
    unusable_connection,
)
from airflow_provider_zohocrm.zoho.views import CustomView, list_custom_views, resolve_view

try:  # at import: running without Airflow's secret masker would leave secrets unmasked in task logs
    from airflow.providers.common.compat.sdk import mask_secret as _airflow_mask_secret
except ImportError as exc:  # common-compat < 1.22.0 has no mask_secret in its sdk module
    raise ImportError(
        "airflow-provider-zohocrm needs Airflow's secret masker (mask_secret in"
        " airflow.providers.common.compat.sdk): install apache-airflow-providers-common-compat>=1.22.0."
    ) from exc


def _mask_secret(value: str) -> None:
    """Register a secret with Airflow's log masker, so task logs show ``***`` instead."""
    if value:
        _airflow_mask_secret(value)


@dataclass(frozen=True)
class ZohoConnectionSettings:
    """Everything the hook reads from a connection, validated. Its repr shows no secret."""

    credentials: OAuthCredentials
    endpoints: Endpoints
    api_version: str
    timeout: tuple[float, float]
    retry: RetryPolicy
    #: extra ``token_cache_dir``: the machine-local token cache (default ``$ZOHOCRM_TOKEN_CACHE_DIR``, else the
    #: temp dir); it must be a 0700 directory of the worker's user
    token_cache_dir: str | None = None

    @classmethod
    def from_connection(cls, conn: Any) -> ZohoConnectionSettings:
        extra = conn.extra_dejson or {}
        missing = [
            name
            for name, value in (
                ("login (client ID)", conn.login),
                ("password (client secret)", conn.password),
                ("extra refresh_token", extra.get("refresh_token")),
            )
            if not value or not str(value).strip()  # whitespace only is missing too (stripped below)
        ]
        if missing:
            raise ZohoConfigError(f"Zoho CRM connection {conn.conn_id!r} is missing: {', '.join(missing)}.")
        api_version = str(extra.get("api_version") or DEFAULT_API_VERSION)
        if api_version not in API_VERSIONS:
            raise ZohoConfigError(
                f"Connection {conn.conn_id!r}: api_version {api_version!r} is not one of {', '.join(API_VERSIONS)}."
            )
        try:
            timeout = float(extra.get("timeout", 60))
            connect_timeout = float(extra.get("connect_timeout", 10))
            retry = RetryPolicy(
                max_attempts=int(extra.get("max_attempts", 6)),
                backoff_base=float(extra.get("backoff_base", 1.0)),
                backoff_max=float(extra.get("backoff_max", 60.0)),
            )
        except (TypeError, ValueError) as exc:
            raise ZohoConfigError(f"Connection {conn.conn_id!r}: bad timeout/retry setting: {exc}") from None
        if timeout <= 0 or connect_timeout <= 0:
            raise ZohoConfigError(f"Connection {conn.conn_id!r}: timeouts must be positive.")
        return cls(
            credentials=OAuthCredentials(
                client_id=str(conn.login).strip(),
                client_secret=str(conn.password).strip(),
                refresh_token=str(extra["refresh_token"]).strip(),
            ),
            endpoints=resolve_endpoints(
                extra.get("data_center"), extra.get("accounts_url") or None, extra.get("api_domain") or None
            ),
            api_version=api_version,
            timeout=(connect_timeout, timeout),
            retry=retry,
            token_cache_dir=str(extra.get("token_cache_dir") or "").strip() or None,
        )


class ZohoCRMHook(HttpHook):
    """Interact with Zoho CRM through a ``zohocrm`` connection.

    The connection holds the OAuth client (login = client ID, password = client secret) and, in its extra,
    ``refresh_token``, ``data_center`` (us, eu, in, au, jp, cn, ca, sa, uk), ``api_version`` (v8) and optional
    ``accounts_url``/``api_domain`` overrides; optional ``timeout``, ``connect_timeout``, ``max_attempts``,
    ``backoff_base``, ``backoff_max`` tune requests and retries.

    Access tokens are shared by every task of the deployment (see :mod:`.token_store`), so a DAG with hundreds of
    mapped tasks asks Zoho for one token, not hundreds.

    :param zohocrm_conn_id: the connection id.
    :param token_store: where processes share tokens; the default shares through Airflow Variables in tasks.
    """

    conn_name_attr = "zohocrm_conn_id"
    default_conn_name = "zohocrm_default"
    conn_type = "zohocrm"
    hook_name = "Zoho CRM"

    def __init__(
        self,
        zohocrm_conn_id: str = default_conn_name,
        *,
        token_store: TokenStore | None = None,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(method="POST", http_conn_id=zohocrm_conn_id, **kwargs)
        self.zohocrm_conn_id = zohocrm_conn_id
        self._token_store = token_store
        self._retry_override = retry

    def __repr__(self) -> str:
        return f"ZohoCRMHook(zohocrm_conn_id={self.zohocrm_conn_id!r})"

    # -- connection ----------------------------------------------------------------------------------------------

    @cached_property
    def settings(self) -> ZohoConnectionSettings:
        """The validated connection; secrets are registered with the log masker as soon as they are read."""
        conn = self.get_connection(self.zohocrm_conn_id)
        for secret in (conn.password, (conn.extra_dejson or {}).get("refresh_token")):
            if secret:
                _mask_secret(str(secret))
        return ZohoConnectionSettings.from_connection(conn)

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """A requests session for Zoho: HttpHook's keep-alive adapter, no basic auth, and none of the
        connection's extras turned into headers (HttpHook would send the refresh token as a header)."""
        session = requests.Session()
        self.base_url = self.settings.endpoints.accounts_url
        self._base_url_initialized = True
        session.headers.update({"Accept": "application/json", "User-Agent": _user_agent()})
        if headers:
            session.headers.update(headers)
        adapter = self.adapter or self.keep_alive_adapter
        if adapter is not None:
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        return session

    @cached_property
    def session(self) -> requests.Session:
        """One session (one connection pool) for the token grant and every API call of this hook."""
        return self.get_conn()

    @cached_property
    def tokens(self) -> TokenManager:
        settings = self.settings
        return TokenManager(
            settings.credentials,
            settings.endpoints,
            self.session,
            store=self._token_store
            if self._token_store is not None
            else AirflowVariableTokenStore(FileTokenStore(settings.token_cache_dir)),
            timeout=settings.timeout,
            on_secret=_mask_secret,
        )

    @cached_property
    def client(self) -> FailureReportingClient:
        """The protocol client, built once per hook; its session is reused for every call."""
        settings = self.settings
        # a credential or connection failure: one log line with its cause and fix (hooks/failures.py)
        return FailureReportingClient(
            self.tokens,
            self.session,
            api_version=settings.api_version,
            timeout=settings.timeout,
            retry=self._retry_override or settings.retry,
            log=self.log,
            conn_id=self.zohocrm_conn_id,
        )

    # -- operations ---------------------------------------------------------------------------------------

    def iter_records(
        self, module: str, *, fields: Sequence[str] = ("id",), cvid: str | None = None, per_page: int = 200
    ) -> Iterator[dict[str, Any]]:
        """Every record of ``module`` (of custom view ``cvid``), paging past 2,000 with page tokens."""
        return self.client.iter_records(module, fields=fields, cvid=cvid, per_page=per_page)

    def iter_coql(self, query: str, *, page_size: int = 2000) -> Iterator[dict[str, Any]]:
        """Every row of a COQL select (give it without limit/offset)."""
        return self.client.iter_coql(query, page_size=page_size)

    def unblock_email(
        self, module: str, record_id: str, unblock_fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        return self.client.unblock_email(module, record_id, unblock_fields)

    def unblock_emails(
        self, module: str, record_ids: Sequence[str], unblock_fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        return self.client.unblock_emails(module, record_ids, unblock_fields)

    def get_org(self) -> dict[str, Any]:
        return self.client.get_org()

    def iter_emails(self, module: str, record_id: str) -> Iterator[dict[str, Any]]:
        """Every email of a record (its Emails related list, ten per call), in Zoho's order."""
        return iter_emails(self.client, module, record_id)

    def check_bounce(
        self,
        module: str,
        record_id: str,
        *,
        now: datetime | None = None,
        min_hours_since_bounce: float = 0,
        budget: CallBudget | None = None,
    ) -> BounceCheck:
        """Whether the record's latest email bounced, and how (reads only as many pages as needed)."""
        return check_bounce(
            self.client,
            module,
            record_id,
            now=now,
            min_hours_since_bounce=min_hours_since_bounce,
            budget=budget,
        )

    def list_custom_views(self, module: str) -> list[CustomView]:
        """The custom views of ``module`` (id, name, display_value, system_name, category, default)."""
        return list_custom_views(self.client, module)

    def resolve_view(self, module: str, name_or_id: str) -> CustomView:
        """A view by id or by the name shown in the CRM; an unknown name raises, listing the views that exist."""
        return resolve_view(self.client, module, name_or_id)

    def add_tags(
        self, module: str, record_ids: Sequence[str], tags: Sequence[str] | str
    ) -> list[dict[str, Any]]:
        """Tag records (≤ 500 per call, existing tags kept); one ``{"id", "outcome", "code", "message"}`` per id.

        Only bad input raises; a failed call gives its ids outcome ``error`` (see :func:`~.zoho.tags.tag_records`).
        """
        from airflow_provider_zohocrm.zoho.tags import add_tags

        return add_tags(self.client, module, record_ids, tags)

    def preflight(
        self,
        *,
        module: str = "Leads",
        view: str | None = None,
        coql_query: str | None = None,
        all_records: bool = False,
        verify: str | None = None,
        needs_person_tag: str | None = None,
        count: bool = False,
        sample: int = DEFAULT_SAMPLE,
        min_hours_since_bounce: float = 0,
        now: datetime | None = None,
    ) -> PreflightReport:
        """Check this connection and one source the way the DAG will use them, read-only: no unblock, no tag
        call (``python -m airflow_provider_zohocrm check``; the params are
        :meth:`~.zoho.preflight.PreflightRequest.checked`'s).

        :raises ZohoValidationError: on bad input, before the connection is read or any call is made.
        """
        request = PreflightRequest.checked(
            module=module,
            view=view,
            coql_query=coql_query,
            all_records=all_records,
            verify=verify,
            needs_person_tag=needs_person_tag,
            count=count,
            sample=sample,
            min_hours_since_bounce=min_hours_since_bounce,
        )
        return self._checked(
            lambda client, settings: run_preflight(
                client, settings, request, conn_id=self.zohocrm_conn_id, now=now
            )
        )

    def test_connection(self) -> tuple[bool, str]:
        """Prove credentials, data center and API domain with one cheap call (the org's details), and compare
        the scopes Zoho granted with what the job needs: a missing scope fails the test, with its fix."""
        try:
            report = self._checked(
                lambda client, settings: connection_checks(client, settings, conn_id=self.zohocrm_conn_id)
            )
        except ZohoCRMError as exc:
            return False, str(exc)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return report.ok, report.summary()

    def _checked(
        self, check: Callable[[ZohoCRMClient, ZohoConnectionSettings], PreflightReport]
    ) -> PreflightReport:
        """Run a check of :mod:`~.zoho.preflight` with this connection's client and settings; a connection that
        cannot be read (or whose client cannot be built, e.g. a token cache directory that is not private) is
        the report's one ✗."""
        try:
            settings = self.settings
            client = self.client
        except ZohoConfigError as exc:
            return unusable_connection(self.zohocrm_conn_id, str(exc))
        except Exception as exc:  # e.g. the connection does not exist
            return unusable_connection(
                self.zohocrm_conn_id, f"{type(exc).__name__}: {exc}", MISSING_CONNECTION_FIX
            )
        client.report_failures = False  # the checklist reports them, each with its fix
        try:
            return check(client, settings)
        finally:
            client.report_failures = True

    # -- HttpHook's generic request helpers: refused ------------------------------------------------------------
    # They would send a request to the connection's base URL (the accounts server) with no access token, no
    # data-center routing, no retry policy and no answer classification. The hook's methods above are the API.

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise _not_for_zoho("run")

    def run_with_advanced_retry(self, *args: Any, **kwargs: Any) -> Any:
        raise _not_for_zoho("run_with_advanced_retry")

    def run_and_check(self, *args: Any, **kwargs: Any) -> Any:
        raise _not_for_zoho("run_and_check")

    def check_response(self, *args: Any, **kwargs: Any) -> None:
        raise _not_for_zoho("check_response")

    # -- connection form (Airflow 3.0/3.1; 3.2+ reads the same definitions from the provider info) -------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extra fields for Airflow 3.0/3.1 (3.2+ builds the form from ``CONN_FIELDS``, never calls this).

        Only ``wtforms`` is required: on 3.0/3.1 the api-server swaps wtforms' fields, ``Optional`` and
        ``any_of`` for its own mocks while it calls this method, and turns them into JSON-schema (``any_of``
        becomes the ``enum`` of a select). ``flask_babel`` and ``flask_appbuilder`` are used when installed,
        but a missing ``flask_babel`` must not raise: Airflow only tolerates missing wtforms/FAB and would
        silently drop both the widgets and the field behaviour of this hook.
        """
        from wtforms import PasswordField, StringField
        from wtforms.validators import Optional, any_of

        try:
            from flask_babel import lazy_gettext
        except ImportError:

            def lazy_gettext(text: str) -> str:
                return text

        try:
            from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        except ImportError:  # FAB-free UIs only read labels, descriptions, defaults and validators
            password_widget: dict[str, Any] = {}
            text_widget: dict[str, Any] = {}
        else:
            password_widget = {"widget": BS3PasswordFieldWidget()}
            text_widget = {"widget": BS3TextFieldWidget()}

        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            schema = spec["schema"]
            if schema.get("format") == "password":
                widgets[name] = PasswordField(
                    lazy_gettext(spec["label"]), description=spec["description"], **password_widget
                )
                continue
            validators: list[Any] = [Optional()]
            if schema.get("enum"):
                validators.append(any_of(list(schema["enum"])))
            widgets[name] = StringField(
                lazy_gettext(spec["label"]),
                validators=validators,
                description=spec["description"],
                default=schema.get("default"),
                **text_widget,
            )
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }


def _not_for_zoho(method: str) -> NotImplementedError:
    return NotImplementedError(
        f"ZohoCRMHook.{method}() is HttpHook's generic request helper and is not supported: it would call the"
        " accounts server without an access token. Use the hook's Zoho methods (unblock_emails, unblock_email,"
        " iter_records, iter_coql, get_org, test_connection), or hook.client.request(method, path) for any"
        " other Zoho CRM API call (token, data center, retries and error handling included)."
    )


def _user_agent() -> str:
    from airflow_provider_zohocrm import __version__

    return f"airflow-provider-zohocrm/{__version__}"
