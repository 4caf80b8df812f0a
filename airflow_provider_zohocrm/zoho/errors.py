"""A small typed exception hierarchy: what failed, Zoho's own code and message, and what to do about it.

No exception ever carries a secret: messages are built from Zoho's error fields and our own text only.
"""

from __future__ import annotations

from typing import Any


class ZohoCRMError(Exception):
    """Base class: an operation against Zoho CRM failed.

    :param message: what happened and what to do.
    :param status: the HTTP status, when there was a response.
    :param code: Zoho's error ``code`` (e.g. ``INVALID_TOKEN``) or OAuth ``error``.
    :param details: Zoho's ``details`` object.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or {}

    def __str__(self) -> str:
        parts = [self.message]
        tags = [f"HTTP {self.status}" if self.status else "", self.code or ""]
        tag = ", ".join(t for t in tags if t)
        if tag:
            parts.append(f"[{tag}]")
        return " ".join(parts)


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
