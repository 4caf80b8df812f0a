"""A small typed exception hierarchy: what failed, Zoho's own code and message, and what to do about it.

No exception ever carries a secret: messages are built from Zoho's error fields and our own text only.

An error a person must act on (a wrong client secret, a revoked refresh token, the wrong data center, a missing
scope) names its cause and its ``fix`` in its first line: ``str(exc)`` is ``"<cause> Fix: <fix> [HTTP …, code]"``,
with no line break, so the line a person reads first (a task log's error line, a traceback's last line, the
preflight's ✗) says what to do.
"""

from __future__ import annotations

from typing import Any


class ZohoCRMError(Exception):
    """Base class: an operation against Zoho CRM failed.

    :param message: what happened and what to do.
    :param status: the HTTP status, when there was a response.
    :param code: Zoho's error ``code`` (e.g. ``INVALID_TOKEN``) or OAuth ``error``.
    :param details: Zoho's ``details`` object.
    :param fix: what a person does about it, when that is known (appended to the message as ``Fix: …``).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        fix: str = "",
    ) -> None:
        full = f"{message} Fix: {fix}" if fix else message
        super().__init__(full)
        #: what happened, without the fix
        self.cause = message
        #: what to do about it ("" when the message alone is all there is to say)
        self.fix = fix
        #: the cause and the fix, as one line
        self.message = full
        self.status = status
        self.code = code
        self.details = details or {}

    def tag(self) -> str:
        """``[HTTP 401, OAUTH_SCOPE_MISMATCH]``, or "" with neither."""
        tags = [f"HTTP {self.status}" if self.status else "", self.code or ""]
        tag = ", ".join(t for t in tags if t)
        return f"[{tag}]" if tag else ""

    def describe_cause(self) -> str:
        """The cause and Zoho's status and code, without the fix (the preflight prints the fix on its own line);
        what was added to the message since (the client's "gave up after 6 attempts") stays."""
        cause = self.message.replace(f" Fix: {self.fix}", "", 1) if self.fix else self.message
        return " ".join(part for part in (cause, self.tag()) if part)

    def __str__(self) -> str:
        return " ".join(part for part in (self.message, self.tag()) if part)


class ZohoConfigError(ZohoCRMError, ValueError):
    """The connection or the arguments are wrong; raised before any call is made."""


class ZohoValidationError(ZohoConfigError):
    """An input value (module, record id, field) is not acceptable; raised before any call is made."""


class ZohoAuthError(ZohoCRMError):
    """Zoho refused the credentials: invalid client, revoked refresh token, bad access token, missing scope."""


class ZohoInvalidClientError(ZohoAuthError):
    """The client ID or secret is wrong, or belongs to another data center."""


class ZohoRefreshTokenError(ZohoAuthError):
    """The refresh token is invalid or revoked: generate a new one (not retried)."""


class ZohoScopeError(ZohoAuthError):
    """The token lacks the OAuth scope the call needs."""


class ZohoTokenThrottledError(ZohoAuthError):
    """Zoho throttles token requests for this refresh token (at most 10 per 10 minutes).

    :param retry_after: seconds to wait before a new token request can succeed.
    """

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ZohoRateLimitError(ZohoCRMError):
    """HTTP 429: the org's concurrency or credit limit was hit, and retries were exhausted."""


class ZohoServerError(ZohoCRMError):
    """HTTP 5xx from Zoho, and retries were exhausted."""


class ZohoTransportError(ZohoCRMError):
    """No usable answer: connection refused or reset, or a timeout, and retries were exhausted."""


class ZohoResponseError(ZohoCRMError):
    """Zoho answered something the protocol does not allow (not JSON, missing ``data``, an HTML page)."""


class ZohoRedirectError(ZohoResponseError):
    """Zoho (or something in between) answered with a redirect. Never followed: following it would send the
    request, its access token or the client secret to the ``Location`` host. Not retried."""


class ZohoRequestError(ZohoCRMError):
    """A 4xx error about the request itself (module, data, URL); retrying cannot help."""


class ZohoPageTokenExpiredError(ZohoRequestError):
    """The ``page_token`` used to page past 2,000 records has expired."""
