"""OAuth 2.0 for Zoho: the refresh-token grant, a token cache shared between processes, and request auth.

Zoho grants at most 10 access tokens per refresh token per 10 minutes, and a throttled refresh token stays
throttled for 10-30 minutes. Mapped Airflow tasks run in separate processes (on Celery or Kubernetes, on separate
machines), so a token obtained by one task must be reused by the others: :class:`TokenManager` keeps the token in
process memory, then in a :class:`TokenStore` that every process of the deployment can read, and asks Zoho only
when neither holds a token that is fresh for a while yet. What goes into a store is encrypted with a key derived
from the connection's own secrets, so the store never holds a usable token in clear.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests
from cryptography.fernet import Fernet, InvalidToken
from requests.auth import AuthBase

from airflow_provider_zohocrm.zoho.datacenters import Endpoints, check_token_api_domain
from airflow_provider_zohocrm.zoho.errors import (
    ZohoAuthError,
    ZohoInvalidClientError,
    ZohoRefreshTokenError,
    ZohoResponseError,
    ZohoTokenThrottledError,
    ZohoTransportError,
)

log = logging.getLogger(__name__)

#: How long Zoho keeps a refresh token throttled once it has asked for too many tokens (10-30 minutes).
THROTTLE_BACKOFF_SECONDS = 600.0
#: How long a refusal of the client or refresh token is remembered in the shared store, so parallel tasks fail at
#: once instead of each asking Zoho. The cache key includes the refresh token, so a new token starts clean.
REFUSAL_MEMORY_SECONDS = 600.0
#: Refresh this long before expiry, so a token never expires in the middle of a task's batches.
DEFAULT_REFRESH_MARGIN_SECONDS = 300.0


@dataclass(frozen=True)
class OAuthCredentials:
    """The self-client or server-based client and its offline refresh token. Never printed."""

    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)

    def __repr__(self) -> str:
        return f"OAuthCredentials(client_id={self.client_id!r}, client_secret='***', refresh_token='***')"

    def cache_key(self, accounts_url: str) -> str:
        """A stable, non-reversible name for this credential set; two connections never share one."""
        material = "\0".join((accounts_url, self.client_id, self.refresh_token)).encode()
        return hashlib.sha256(material).hexdigest()[:32]

    def cipher(self) -> Fernet:
        """A Fernet key only the holders of this connection can derive."""
        material = "\0".join(("zohocrm-token-cache", self.client_id, self.client_secret, self.refresh_token))
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest()))


@dataclass(frozen=True)
class AccessToken:
    """An access token, the API domain it belongs to and when it stops working. Never printed."""

    value: str = field(repr=False)
    api_domain: str
    expires_at: float
    scope: str = ""

    def __repr__(self) -> str:
        return f"AccessToken(value='***', api_domain={self.api_domain!r}, expires_at={self.expires_at:.0f})"

    def fresh_for(self, seconds: float, now: float | None = None) -> bool:
        return self.expires_at - (time.time() if now is None else now) > seconds


class TokenStore(Protocol):
    """Somewhere processes share the (encrypted) token state of a connection."""

    def load(self, key: str) -> str | None:
        """The blob saved under ``key``, or ``None``."""

    def save(self, key: str, blob: str) -> None:
        """Save ``blob`` under ``key``."""

    def delete(self, key: str) -> None:
        """Forget ``key``."""

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Hold while refreshing, so that parallel holders of the store refresh once, not each."""


class NullTokenStore:
    """Shares nothing: each process keeps its own token (scripts, one-off calls)."""

    def load(self, key: str) -> str | None:
        return None

    def save(self, key: str, blob: str) -> None:
        return None

    def delete(self, key: str) -> None:
        return None

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class FileTokenStore:
    """Shares tokens between processes of one machine through files, serialised by ``flock``.

    On its own it serves the LocalExecutor and scripts; the hook puts it under the Airflow Variable store so
    that processes of one machine also refresh one at a time when tasks run on many machines.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        default = Path(tempfile.gettempdir()) / f"airflow-zohocrm-{os.getuid()}"
        self.directory = Path(directory) if directory else default
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, key: str, suffix: str) -> Path:
        return self.directory / f"{key}.{suffix}"

    def load(self, key: str) -> str | None:
        try:
            return self._path(key, "token").read_text()
        except FileNotFoundError:
            return None

    def save(self, key: str, blob: str) -> None:
        path = self._path(key, "token")
        tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(blob)
        os.replace(tmp, path)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key, "token").unlink()

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        fd = os.open(self._path(key, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


@dataclass
class TokenStats:
    """What this process asked of Zoho's accounts server and of the store (for tests and benchmarks)."""

    refreshes: int = 0
    shared_hits: int = 0
    memory_hits: int = 0
    invalidations: int = 0


class TokenManager:
    """Hands out a fresh access token, asking Zoho as rarely as Zoho's limits require.

    Order: process memory → shared store (under the store's lock) → the refresh-token grant. A token is
    refreshed ``refresh_margin`` seconds before it expires. A token Zoho rejects is dropped everywhere. A
    throttled refresh raises :class:`ZohoTokenThrottledError` at once, and the throttle is remembered in the
    store so that parallel tasks fail fast instead of making the throttle last longer.
    """

    def __init__(
        self,
        credentials: OAuthCredentials,
        endpoints: Endpoints,
        session: requests.Session,
        *,
        store: TokenStore | None = None,
        timeout: float | tuple[float, float] = (10.0, 30.0),
        refresh_margin: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        on_secret: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.endpoints = endpoints
        self.session = session
        self.store: TokenStore = store or NullTokenStore()
        self.timeout = timeout
        self.refresh_margin = refresh_margin
        self.on_secret = on_secret
        self.clock = clock
        self.key = credentials.cache_key(endpoints.accounts_url)
        self.stats = TokenStats()
        self._cipher = credentials.cipher()
        self._memory: AccessToken | None = None
        self._lock = threading.Lock()
        if on_secret:
            on_secret(credentials.client_secret)
            on_secret(credentials.refresh_token)

    def __repr__(self) -> str:
        return f"TokenManager(client_id={self.credentials.client_id!r}, accounts={self.endpoints.accounts_url!r})"

    # -- public -----------------------------------------------------------------------------------------------

    def get_token(self) -> AccessToken:
        """A token fresh for at least ``refresh_margin`` seconds."""
        token = self._memory
        if token and token.fresh_for(self.refresh_margin, self.clock()):
            self.stats.memory_hits += 1
            return token
        shared = self._shared_fresh_token()  # peek without the lock: the common case in a mapped task
        if shared:
            return shared
        with self._lock, self.store.lock(self.key):
            state = self._load_state()
            shared = self._shared_fresh_token(state)
            if shared:
                return shared
            throttled_until = float(state.get("throttled_until") or 0)
            if throttled_until > self.clock():
                raise self._throttled(throttled_until - self.clock())
            refused = state.get("refused") or {}
            if float(refused.get("until") or 0) > self.clock():
                # Another task already learnt Zoho refuses these credentials: fail the same way, ask nobody.
                raise self._grant_error({"error": refused.get("code")}, int(refused.get("status") or 200))
            try:
                token = self._grant()
            except ZohoTokenThrottledError as exc:
                self._save_state(None, self.clock() + exc.retry_after)
                raise
            except (ZohoRefreshTokenError, ZohoInvalidClientError) as exc:
                refusal = {
                    "code": exc.code,
                    "status": exc.status,
                    "until": self.clock() + REFUSAL_MEMORY_SECONDS,
                }
                self._save_state(None, 0.0, refusal)
                raise
            self._save_state(token, 0.0)
            self._remember(token)
            return token

    def _shared_fresh_token(self, state: dict[str, Any] | None = None) -> AccessToken | None:
        shared = (self._load_state() if state is None else state).get("token")
        if isinstance(shared, AccessToken) and shared.fresh_for(self.refresh_margin, self.clock()):
            self.stats.shared_hits += 1
            self._remember(shared)
            return shared
        return None

    def invalidate(self, token_value: str) -> None:
        """Zoho rejected ``token_value``: forget it here and in the store (unless another is there already)."""
        self.stats.invalidations += 1
        with self._lock, self.store.lock(self.key):
            if self._memory and self._memory.value == token_value:
                self._memory = None
            shared = self._load_state().get("token")
            if isinstance(shared, AccessToken) and shared.value == token_value:
                self.store.delete(self.key)

    def revoke_refresh_token(self) -> None:
        """Revoke the refresh token at Zoho (ends every access token minted from it) and clear the cache."""
        response = self._post(self.endpoints.revoke_url, params={"token": self.credentials.refresh_token})
        body = _json_or_none(response)
        if response.status_code >= 400 or (isinstance(body, dict) and body.get("status") == "failure"):
            raise ZohoAuthError("Zoho did not revoke the refresh token.", status=response.status_code)
        with self._lock:
            self._memory = None
            self.store.delete(self.key)

    # -- internals --------------------------------------------------------------------------------------------

    def _remember(self, token: AccessToken) -> None:
        if self.on_secret:
            self.on_secret(token.value)
        self._memory = token

    def _load_state(self) -> dict[str, Any]:
        try:
            blob = self.store.load(self.key)
        except Exception as exc:  # a broken store must never stop the job: fall back to asking Zoho
            log.warning("Zoho token store unavailable (%s); continuing without it.", type(exc).__name__)
            return {}
        if not blob:
            return {}
        try:
            data = json.loads(self._cipher.decrypt(blob.encode()))
        except (InvalidToken, ValueError):
            return {}  # written with other secrets (a rotated client secret): ignore and overwrite
        token = None
        if data.get("access_token"):
            token = AccessToken(
                value=data["access_token"],
                api_domain=data["api_domain"],
                expires_at=float(data["expires_at"]),
                scope=data.get("scope", ""),
            )
        return {
            "token": token,
            "throttled_until": data.get("throttled_until", 0),
            "refused": data.get("refused"),
        }

    def _save_state(
        self, token: AccessToken | None, throttled_until: float, refused: dict[str, Any] | None = None
    ) -> None:
        data: dict[str, Any] = {"throttled_until": throttled_until}
        if refused:
            data["refused"] = refused
        if token:
            data.update(
                access_token=token.value,
                api_domain=token.api_domain,
                expires_at=token.expires_at,
                scope=token.scope,
            )
        blob = self._cipher.encrypt(json.dumps(data).encode()).decode()
        try:
            self.store.save(self.key, blob)
        except Exception as exc:
            log.warning("Could not share the Zoho token (%s); other tasks may refresh.", type(exc).__name__)

    def _throttled(self, retry_after: float) -> ZohoTokenThrottledError:
        minutes = max(1, round(retry_after / 60))
        return ZohoTokenThrottledError(
            "Zoho is throttling access-token requests for this refresh token (Zoho allows 10 per 10 minutes"
            f" per refresh token). Wait about {minutes} minute(s) before running again; retrying sooner"
            " extends the throttle. Tasks of one deployment share tokens through the token store, so this"
            " usually means other jobs or tools use the same refresh token: give them their own.",
            retry_after=retry_after,
            code="Access Denied",
        )

    def _post(self, url: str, **kwargs: Any) -> requests.Response:
        last: Exception | None = None
        for attempt in range(3):
            try:
                response = self.session.post(url, timeout=self.timeout, auth=None, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = exc
            else:
                if response.status_code < 500:
                    return response
                last = ZohoTransportError(f"Zoho accounts server answered HTTP {response.status_code}")
            time.sleep(min(8.0, 0.5 * 2**attempt))
        raise ZohoTransportError(
            f"Could not reach Zoho's accounts server {self.endpoints.accounts_url}: {type(last).__name__}."
        )

    def _grant(self) -> AccessToken:
        """The refresh-token grant. Zoho reports most failures with HTTP 200: no access_token = failure."""
        self.stats.refreshes += 1
        creds = self.credentials
        response = self._post(
            self.endpoints.token_url,
            data={
                "grant_type": "refresh_token",
                "client_id": creds.client_id,
                "client_secret": creds.client_secret,
                "refresh_token": creds.refresh_token,
            },
        )
        body = _json_or_none(response)
        if not isinstance(body, dict):
            raise ZohoResponseError(
                "Zoho's accounts server answered without JSON"
                f" ({response.headers.get('Content-Type', 'no content type')}).",
                status=response.status_code,
            )
        access_token = body.get("access_token")
        if not access_token:
            raise self._grant_error(body, response.status_code)
        if self.on_secret:
            self.on_secret(str(access_token))
        api_domain = self.endpoints.api_domain_override or check_token_api_domain(
            str(body.get("api_domain") or self.endpoints.data_center.api_domain), self.endpoints.data_center
        )
        return AccessToken(
            value=str(access_token),
            api_domain=api_domain,
            expires_at=self.clock() + _expires_in_seconds(body),
            scope=str(body.get("scope", "")),
        )

    def _grant_error(self, body: dict[str, Any], status: int) -> ZohoAuthError:
        error = str(body.get("error") or "")
        description = str(body.get("error_description") or "")
        dc = self.endpoints.data_center
        if error == "invalid_client":
            return ZohoInvalidClientError(
                "Zoho rejected the client ID/secret (invalid_client). Check them, and check that the client"
                f" was created in the {dc.name!r} data center ({self.endpoints.accounts_url}): a client of"
                " another data center is unknown here.",
                status=status,
                code=error,
            )
        if error == "invalid_code":
            return ZohoRefreshTokenError(
                "Zoho rejected the refresh token (invalid_code): it is wrong, revoked, or was issued for"
                " another client or data center. Generate a new one with access_type=offline.",
                status=status,
                code=error,
            )
        text = f"{error} {description} {body.get('status', '')}".lower()
        if "access denied" in text or "too many requests" in text or "throttl" in text:
            return self._throttled(THROTTLE_BACKOFF_SECONDS)
        return ZohoAuthError(
            f"Zoho refused the access-token request: {error or 'no access_token in the answer'}"
            + (f" ({description})" if description else ""),
            status=status,
            code=error or None,
        )


def _expires_in_seconds(body: dict[str, Any]) -> float:
    """Both forms Zoho uses: ``expires_in`` in seconds, or (older) ``expires_in_sec`` + ``expires_in`` in ms."""
    if "expires_in_sec" in body:
        return float(body["expires_in_sec"])
    value = float(body.get("expires_in", 3600))
    return value / 1000.0 if value > 86400 else value


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class ZohoTokenAuth(AuthBase):
    """Attaches ``Authorization: Zoho-oauthtoken …`` from a :class:`TokenManager` to each request."""

    def __init__(self, tokens: TokenManager) -> None:
        self.tokens = tokens

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Zoho-oauthtoken {self.tokens.get_token().value}"
        return request

    def __repr__(self) -> str:
        return "ZohoTokenAuth(***)"


def token_from_request(request: requests.PreparedRequest | None) -> str | None:
    """The access token a sent request carried (to invalidate exactly that one when Zoho rejects it)."""
    if request is None:
        return None
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Zoho-oauthtoken ") if header.startswith("Zoho-oauthtoken ") else None
