"""Zoho's accounts server: OAuth clients, refresh/access tokens, the grant/revoke endpoints and their limits.

Rules modelled (Zoho's token-validity and API-limits pages): every answer is HTTP 200 and a failure is a body
without ``access_token``; at most ``token_limit`` (10) grants per refresh token per ``token_window`` (10 min),
after which the refresh token is throttled for ``throttle_seconds`` and each attempt during the throttle
re-arms it; at most ``max_live_tokens`` (15) live access tokens per refresh token (the 16th silently invalidates
the oldest). The CRM side asks this module whether an ``Authorization`` header is valid and has a scope.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .models import (
    DEFAULT_SCOPES,
    JSON,
    AccessToken,
    OrgState,
    RefreshToken,
    Reply,
    Request,
    ZohoError,
    error,
    hex_token,
)
from .routing import route

if TYPE_CHECKING:
    from .backend import EmulatorBackend


def token_fingerprint(token: str) -> str:
    """How the admin endpoints name a token: the first 8 hex digits of its SHA-256. ``/_emulator/stats`` is
    unauthenticated, and a refresh token shown there would be enough to call the revoke endpoint."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


THROTTLED = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "status": "failure",
}


class AccountsService(OrgState):
    """State operations and rules of the accounts server."""

    def add_client(self, client_id: str | None = None, client_secret: str | None = None) -> tuple[str, str]:
        """Register an OAuth client (self-client) and return (client_id, client_secret)."""
        cid = client_id or "1000." + secrets.token_hex(15).upper()
        secret = client_secret or secrets.token_hex(21)
        with self._lock:
            self._clients[cid] = secret
        return cid, secret

    def add_refresh_token(
        self, client_id: str, refresh_token: str | None = None, scopes: Iterable[str] | None = None
    ) -> str:
        """Issue a refresh token for a client with the given scopes."""
        token = refresh_token or hex_token()
        with self._lock:
            if client_id not in self._clients:
                raise KeyError(f"unknown client {client_id!r}")
            self._refresh[token] = RefreshToken(token, client_id, list(scopes or DEFAULT_SCOPES))
        return token

    def revoke_refresh_token(self, refresh_token: str) -> bool:
        """Revoke a refresh token and every access token minted from it."""
        with self._lock:
            rt = self._refresh.get(refresh_token)
            if rt is None:
                return False
            rt.revoked = True
            for at in self._access.values():
                if at.refresh_token == refresh_token:
                    at.revoked = True
            return True

    def revoke_access_tokens(self) -> None:
        """Invalidate every live access token (revocation or expiry mid-run)."""
        with self._lock:
            for at in self._access.values():
                at.revoked = True

    def expire_access_tokens(self) -> None:
        """Make every access token expired now (the refresh token stays usable)."""
        with self._lock:
            now = self.now()
            for at in self._access.values():
                at.expires_at = min(at.expires_at, now - 1)

    def token_issue_times(self, refresh_token: str | None = None) -> list[float]:
        """When access tokens were minted from a refresh token (default: the default one)."""
        with self._lock:
            return list(self._refresh[refresh_token or self.refresh_token].issue_times)

    def live_access_tokens(self, refresh_token: str | None = None) -> list[str]:
        """Access tokens of a refresh token that would currently be accepted."""
        with self._lock:
            rt = self._refresh[refresh_token or self.refresh_token]
            return [t for t in rt.live if self._access_valid(self._access[t])]

    def secrets(self) -> list[str]:
        """Every client secret, refresh token and access token this org ever had (for leak checks)."""
        with self._lock:
            found = [*self._clients.values(), *self._refresh, *self._access]
        return [value for value in dict.fromkeys(found) if value]

    def _access_valid(self, at: AccessToken) -> bool:
        rt = self._refresh.get(at.refresh_token)
        return not at.revoked and at.expires_at > self.now() and rt is not None and not rt.revoked

    def _revoke_access(self, token: str) -> bool:
        with self._lock:
            at = self._access.get(token)
            if at is None:
                return False
            at.revoked = True
            return True

    def grant_token(self, params: Mapping[str, str], api_domain: str) -> JSON:
        """``POST /oauth/v2/token``: every answer is HTTP 200; failures carry ``error`` and no token."""
        with self._lock:
            if params.get("grant_type") != "refresh_token":
                return {"error": "unsupported_grant_type"}
            cid = params.get("client_id", "")
            if cid not in self._clients or self._clients[cid] != params.get("client_secret"):
                return {"error": "invalid_client"}
            rt = self._refresh.get(params.get("refresh_token", ""))
            if rt is None or rt.revoked or rt.client_id != cid:
                return {"error": "invalid_code"}
            now = self.now()
            cfg = self.config
            rt.attempt_times = [t for t in rt.attempt_times if t > now - cfg.token_window]
            if now < rt.throttled_until or len(rt.attempt_times) >= cfg.token_limit:
                if now >= rt.throttled_until:
                    rt.throttled_until = now + cfg.throttle_seconds
                rt.attempt_times.append(now)
                self._counters["token_throttled"] += 1
                return dict(THROTTLED)
            rt.attempt_times.append(now)
            rt.live = [t for t in rt.live if self._access_valid(self._access[t])]
            while len(rt.live) >= cfg.max_live_tokens:
                self._access[rt.live.pop(0)].revoked = True
            token = hex_token()
            self._access[token] = AccessToken(token, rt.token, list(rt.scopes), now + cfg.token_ttl)
            rt.live.append(token)
            rt.issue_times.append(now)
            self._counters["tokens_issued"] += 1
            answer: JSON = {
                "access_token": token,
                "scope": " ".join(rt.scopes),
                "api_domain": self.config.advertised_api_domain or api_domain,
                "token_type": "Bearer",
            }
            if not cfg.scope_in_token_answer:
                del answer["scope"]
            if cfg.legacy_expires:
                answer["expires_in_sec"] = cfg.token_ttl
                answer["expires_in"] = cfg.token_ttl * 1000
            else:
                answer["expires_in"] = cfg.token_ttl
            return answer

    # -- what the CRM side asks

    def authenticate(self, headers: Mapping[str, str]) -> AccessToken:
        """The access token of an ``Authorization: Zoho-oauthtoken …`` header, or Zoho's 401."""
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme != "Zoho-oauthtoken" or not token.strip():
            raise ZohoError(401, error("AUTHENTICATION_FAILURE", "Authentication failed"))
        at = self._access.get(token.strip())
        if at is None or not self._access_valid(at):
            raise ZohoError(401, error("INVALID_TOKEN", "invalid oauth token"))
        return at

    def refresh_token_of(self, req: Request) -> str:
        """The refresh token behind a request (the grant's parameter, or the access token's origin)."""
        with self._lock:
            if req.endpoint == "token":
                return req.params_and_form().get("refresh_token", self.refresh_token)
            header = req.headers.get("authorization", "")
            at = self._access.get(header.removeprefix("Zoho-oauthtoken ").strip())
            return at.refresh_token if at else self.refresh_token


# --------------------------------------------------------------------------------------------- routes


@route("token", "/oauth/v2/token", "POST", service="accounts")
def token(backend: EmulatorBackend, req: Request) -> Reply:
    """Grant an access token from a refresh token (query string or form body, like Zoho)."""
    return Reply.json(200, backend.grant_token(req.params_and_form(), req.base_url))


@route("revoke", "/oauth/v2/token/revoke", "*", service="accounts")
def revoke(backend: EmulatorBackend, req: Request) -> Reply:
    """Revoke a refresh token (and its access tokens) or one access token."""
    value = req.params_and_form().get("token", "")
    ok = backend.revoke_refresh_token(value) or backend._revoke_access(value)
    return Reply.json(200, {"status": "success"} if ok else {"error": "invalid_code"})
