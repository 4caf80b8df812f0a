"""OAuth 2.0 for Zoho: the refresh-token grant, a token cache shared between processes, and request auth.

Zoho grants at most 10 access tokens per refresh token per 10 minutes, and a throttled refresh token stays
throttled for 10-30 minutes. Mapped Airflow tasks run in separate processes (on Celery or Kubernetes, on separate
machines), so a token obtained by one task must be reused by the others: :class:`TokenManager` keeps the token in
process memory, then in a :class:`TokenStore` that every process of the deployment can read, and asks Zoho only
when neither holds a token that is fresh for a while yet. What goes into a store is encrypted with a key derived
from the connection's own secrets, so the store never holds a usable token in clear.

The protocol (what is atomic, what is best effort, the worst case in grants) is written down in
``docs/ARCHITECTURE.md``, section "Token sharing protocol".
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import random
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, cast
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet, InvalidToken
from requests.auth import AuthBase

from airflow_provider_zohocrm.zoho.datacenters import Endpoints, check_token_api_domain
from airflow_provider_zohocrm.zoho.errors import (
    ZohoAuthError,
    ZohoConfigError,
    ZohoCRMError,
    ZohoInvalidClientError,
    ZohoRefreshTokenError,
    ZohoResponseError,
    ZohoServerError,
    ZohoTokenThrottledError,
    ZohoTransportError,
)

log = logging.getLogger(__name__)

#: How long Zoho keeps a refresh token throttled once it has asked for too many tokens (10-30 minutes).
THROTTLE_BACKOFF_SECONDS = 600.0
#: How long a refusal of the client or refresh token is remembered in the shared store, so parallel tasks fail at
#: once instead of each asking Zoho. The cache key includes the refresh token, so a new token starts clean.
REFUSAL_MEMORY_SECONDS = 600.0
#: After a grant that failed or went unanswered, nobody asks Zoho again for this long (each failed grant may
#: still count against the 10 per 10 minutes); tasks with a working token keep it, others fail with the cause.
FAILED_GRANT_BACKOFF_SECONDS = 60.0
#: A replacement token Zoho's API rejects this soon after it was granted is not stale: its rejection is recorded.
REJECTED_AT_ONCE_SECONDS = 60.0
#: Refresh this long before expiry, so a token never expires in the middle of a task's batches.
DEFAULT_REFRESH_MARGIN_SECONDS = 300.0
#: Each TokenManager (each task) draws its margin from [margin * (1 - jitter), margin], so that the tasks of a
#: long run do not all reach the margin at the same instant.
REFRESH_MARGIN_JITTER = 0.5
#: A token is used (while one process refreshes it) until this many seconds before it expires.
USABLE_FLOOR_SECONDS = 30.0
#: Attempts of one token POST; only failures that cannot have reached Zoho are retried (see ``_post``).
GRANT_ATTEMPTS = 3
#: A lease outlasts the grant it protects by this much: the time to save the grant's result.
SAVE_SECONDS = 15.0
#: Environment variable naming the machine-local token cache directory (overrides the temp-dir default).
TOKEN_CACHE_DIR_ENV = "ZOHOCRM_TOKEN_CACHE_DIR"  # noqa: S105 - a variable name, not a secret

LeaseStatus = Literal["held", "busy", "changed", "unavailable"]


def grant_backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt + 1`` of a token POST."""
    return min(8.0, 0.5 * 2.0**attempt)


def worst_case_grant_seconds(timeout: float | tuple[float, float], attempts: int = GRANT_ATTEMPTS) -> float:
    """The longest one grant can take: every attempt runs into its connect + read timeout, plus the backoffs.

    ``TokenManager._post`` never starts an attempt that could end past this budget, so a lease held for this
    long (plus the time to save the result) outlasts the grant it protects."""
    connect, read = (timeout, timeout) if isinstance(timeout, int | float) else timeout
    return float(
        attempts * (float(connect) + float(read)) + sum(grant_backoff(a) for a in range(attempts - 1))
    )


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
    #: when it was granted (0 = unknown: a state written by an older version); gives the token's lifetime
    issued_at: float = 0.0

    def __repr__(self) -> str:
        return f"AccessToken(value='***', api_domain={self.api_domain!r}, expires_at={self.expires_at:.0f})"

    def fresh_for(self, seconds: float, now: float | None = None) -> bool:
        return self.expires_at - (time.time() if now is None else now) > seconds

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.issued_at if self.issued_at else 3600.0


class TokenStore(Protocol):
    """Somewhere processes share the (encrypted) token state of a connection.

    A store may also offer ``try_lock(key)`` (the lock without waiting, yielding whether it was taken),
    ``wait_unlocked(key)`` (wait, shared, until no process holds the lock), ``load_local(key)`` (a cheap
    machine-local read), ``lease(key, hold_seconds=, wait=, since=)`` (a cross-machine lease yielding a
    :data:`LeaseStatus`) and ``observed(key)`` (the blob a lease wait ended on); :class:`TokenManager` uses them
    when present.
    """

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


def default_token_cache_dir() -> Path:
    """``$ZOHOCRM_TOKEN_CACHE_DIR``, else ``<temp dir>/airflow-zohocrm-<uid>``."""
    configured = os.environ.get(TOKEN_CACHE_DIR_ENV, "").strip()
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"airflow-zohocrm-{os.getuid()}"


def ensure_private_directory(directory: Path) -> Path:
    """Create ``directory`` with mode 0700, or accept an existing one only if it is a real directory (not a
    symlink) owned by this user with mode 0700. On a shared ``/tmp`` anyone can create the default path first;
    using such a directory would let them read or swap the token cache."""
    try:
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(directory)
    fix = (
        f" Remove it or point the cache elsewhere: connection extra 'token_cache_dir' or ${TOKEN_CACHE_DIR_ENV}"
        " (a directory only this user can reach, mode 0700)."
    )
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ZohoConfigError(f"Zoho token cache directory {directory} is not a plain directory.{fix}")
    if info.st_uid != os.getuid():
        raise ZohoConfigError(
            f"Zoho token cache directory {directory} belongs to uid {info.st_uid}, not to this user"
            f" (uid {os.getuid()}).{fix}"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode != 0o700:
        raise ZohoConfigError(
            f"Zoho token cache directory {directory} has mode {mode:04o}; it must be 0700"
            f" (chmod 700 {directory}).{fix}"
        )
    return directory


class FileTokenStore:
    """Shares tokens between processes of one machine through files, serialised by ``flock``.

    On its own it serves the LocalExecutor and scripts; the hook puts it under the Airflow Variable store so
    that processes of one machine also refresh one at a time when tasks run on many machines. The directory must
    be private (see :func:`ensure_private_directory`); no file in it is opened through a symlink.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = ensure_private_directory(Path(directory) if directory else default_token_cache_dir())

    def _path(self, key: str, suffix: str) -> Path:
        return self.directory / f"{key}.{suffix}"

    def _open(self, path: Path, flags: int) -> int:
        try:
            return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ZohoConfigError(
                    f"Zoho token cache file {path} is a symlink; refusing to follow it."
                ) from None
            raise

    def load(self, key: str) -> str | None:
        try:
            fd = self._open(self._path(key, "token"), os.O_RDONLY)
        except FileNotFoundError:
            return None
        with os.fdopen(fd) as fh:
            return fh.read()

    load_local = load

    def save(self, key: str, blob: str) -> None:
        path = self._path(key, "token")
        tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # a leftover of a killed process (never a file we follow: unlink removes the link)
        fd = self._open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "w") as fh:
            fh.write(blob)
        os.replace(tmp, path)  # replaces a symlink itself, never its target

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key, "token").unlink()

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        fd = self._open(self._path(key, "lock"), os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def wait_unlocked(self, key: str) -> bool:
        """Wait until no process of this machine holds the lock; True if one did. The wait takes a shared lock,
        so every waiter wakes when the holder leaves, instead of taking the lock one after another."""
        fd = self._open(self._path(key, "lock"), os.O_RDWR | os.O_CREAT)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return False
            except BlockingIOError:
                fcntl.flock(fd, fcntl.LOCK_SH)
                return True
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextlib.contextmanager
    def try_lock(self, key: str) -> Iterator[bool]:
        """The lock if nobody on this machine holds it; yields whether it was taken (never waits)."""
        fd = self._open(self._path(key, "lock"), os.O_RDWR | os.O_CREAT)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


@dataclass
class TokenStats:
    """What this process asked of Zoho's accounts server and of the store (for tests and benchmarks)."""

    refreshes: int = 0
    shared_hits: int = 0
    memory_hits: int = 0
    invalidations: int = 0
    #: refreshes started while the current token still worked (single-flight: at most one process at a time)
    early_refreshes: int = 0
    #: times this process used a still-working token because another process was refreshing it, or because a
    #: refresh was throttled or failed
    kept_tokens: int = 0


class DeadlinePassed(Exception):
    """A call did not return by its deadline (it may still be running: its result is dropped)."""


def run_within(seconds: float, call: Callable[[], requests.Response]) -> requests.Response:
    """``call()`` if it returns within ``seconds``, else :class:`DeadlinePassed`. requests bounds the connect
    timeout per address and the read timeout per ``recv``, and DNS not at all: only this bounds a grant, so that
    the lease that protects it (held for the deadline plus the save) never expires under it."""
    result: list[requests.Response] = []
    error: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # handed to the caller
            error.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="zohocrm-token-grant", daemon=True).start()
    if not done.wait(max(0.0, seconds)):
        raise DeadlinePassed
    if error:
        raise error[0]
    return result[0]


class GrantNotAnsweredError(ZohoTransportError):
    """The token POST reached Zoho (or may have) but no answer came back; not retried, since Zoho may have
    minted a token that counts against its 10 per 10 minutes."""


class TokenManager:
    """Hands out a working access token, asking Zoho as rarely as Zoho's limits require.

    Order: process memory → shared store → the refresh-token grant. A token is refreshed in its last
    ``refresh_margin`` seconds (jittered per manager, at most half its lifetime), by one process at a time: the
    others keep using it until it really expires. A token Zoho rejects is dropped everywhere. A throttled or
    refused refresh keeps the working token and records the throttle next to it; with no working token it raises
    :class:`ZohoTokenThrottledError` at once, and the throttle is remembered in the store so that parallel tasks
    fail fast instead of making the throttle last longer.
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
        margin_jitter: float = REFRESH_MARGIN_JITTER,
        on_secret: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.credentials = credentials
        self.endpoints = endpoints
        self.session = session
        self.store: TokenStore = store or NullTokenStore()
        self.timeout = timeout
        jitter = 1.0 - margin_jitter * random.random()  # one draw per manager (per task)
        self.refresh_margin = refresh_margin * jitter
        #: share of a token's lifetime the margin may take (short-lived tokens are not refreshed on arrival)
        self.lifetime_share = 0.5 * jitter
        self.on_secret = on_secret
        self.clock = clock
        self.sleep = sleep
        #: runs one POST, raising DeadlinePassed if it has not returned in time (a simulation replaces it)
        self.run_within: Callable[[float, Callable[[], requests.Response]], requests.Response] = run_within
        self.key = credentials.cache_key(endpoints.accounts_url)
        self.stats = TokenStats()
        #: the longest one grant may take; a cross-machine lease is held this long plus the time to save
        self.grant_budget = worst_case_grant_seconds(timeout)
        self._cipher = credentials.cipher()
        self._memory: AccessToken | None = None
        self._last_blob: str | None = None  # the shared blob last read (to notice a change, to copy locally)
        self._masked: set[str] = set()
        self._rejected: set[str] = set()  # tokens Zoho's API rejected (see ``invalidate``)
        self._lock = threading.Lock()
        self._deadline: float | None = None  # the next grant's deadline (set when its lease is asked for)
        if on_secret:
            on_secret(credentials.client_secret)
            on_secret(credentials.refresh_token)

    def __repr__(self) -> str:
        return f"TokenManager(client_id={self.credentials.client_id!r}, accounts={self.endpoints.accounts_url!r})"

    # -- public -----------------------------------------------------------------------------------------------

    def get_token(self) -> AccessToken:
        """A working token; a fresh one unless another process is refreshing it right now."""
        token = self._get_token()
        # Registered with the log masker before any caller sees it, but after this machine's lock is released:
        # inside a task each registration is a round trip to the supervisor, and the lock's waiters queue on it.
        self._mask(token.value)
        return token

    def _get_token(self) -> AccessToken:
        now = self.clock()
        token = self._memory
        if token and not self._wants_refresh(token, now):
            self.stats.memory_hits += 1
            return token
        # this machine's copy first (no Task API call)
        local_state = self._decode(self._load_local())
        local = local_state.get("token")
        if (
            isinstance(local, AccessToken)
            and local.value not in self._rejected
            and not self._wants_refresh(local, now)
        ):
            return self._shared_hit(local)
        if self._best_usable(token, local, now=now) is None:
            # Nothing usable here: wait for this machine's lock before asking the shared store, so that one
            # process per machine makes the Task API calls of a cold start and the others read its copy.
            return self._refresh_now()
        state = self._load_state()
        shared = None if _behind_local(state, local_state, now) else state.get("token")
        if (
            isinstance(shared, AccessToken)
            and shared.value not in self._rejected
            and not self._wants_refresh(shared, now)
        ):
            self._share_locally()
            return self._shared_hit(shared)
        usable = self._best_usable(token, local, shared, now=now)
        if usable is not None:
            return self._refresh_early(usable, state)
        return self._refresh_now()

    def invalidate(
        self, token_value: str, message: str = "", *, final: bool = False, accepted: bool = False
    ) -> None:
        """Zoho's API rejected ``token_value`` (its answer: ``message``): replace it, once for every task.

        Like a refresh, under this machine's lock and the lease: if the store holds another token already,
        that one is used; only the lease holder replaces the rejected token. A token granted moments ago and
        rejected at once is not stale (say, the api_domain is another org's): it is replaced once, and when
        the replacement is rejected at once too the rejection is recorded, so every task stops with the first
        401's message instead of burning Zoho's 10 grants per 10 minutes. ``final``: the caller will not
        retry, so no replacement is granted for it (the rejected token is dropped, or its rejection recorded).
        ``accepted``: the caller saw Zoho accept this token before (it was revoked or expired since, so its
        rejection is not "at once")."""
        self.stats.invalidations += 1
        with self._lock:
            self._rejected.add(token_value)  # never used again by this process, wherever it is found
            if self._memory and self._memory.value == token_value:
                self._memory = None
        self._single_flight(_Rejection(token_value, message, final, accepted))

    def revoke_refresh_token(self) -> None:
        """Revoke the refresh token at Zoho (ends every access token minted from it) and clear the cache."""
        response = self._post(self.endpoints.revoke_url, params={"token": self.credentials.refresh_token})
        body = _json_or_none(response)
        if response.status_code >= 400 or (isinstance(body, dict) and body.get("status") == "failure"):
            raise ZohoAuthError("Zoho did not revoke the refresh token.", status=response.status_code)
        with self._lock:
            self._memory = None
            self.store.delete(self.key)

    # -- the refresh paths ------------------------------------------------------------------------------------

    def _wants_refresh(self, token: AccessToken, now: float) -> bool:
        """In this manager's margin (never more than half the token's lifetime: a short-lived token is not
        refreshed the moment it arrives)."""
        return not token.fresh_for(min(self.refresh_margin, token.lifetime * self.lifetime_share), now)

    @staticmethod
    def _usable(token: AccessToken, now: float) -> bool:
        return token.fresh_for(min(USABLE_FLOOR_SECONDS, token.lifetime / 10), now)

    def _best_usable(self, *tokens: object, now: float) -> AccessToken | None:
        candidates = [
            t
            for t in tokens
            if isinstance(t, AccessToken) and t.value not in self._rejected and self._usable(t, now)
        ]
        return max(candidates, key=lambda t: t.expires_at) if candidates else None

    def _shared_hit(self, token: AccessToken) -> AccessToken:
        self.stats.shared_hits += 1
        self._remember(token)
        return token

    def _keep(self, token: AccessToken) -> AccessToken:
        self.stats.kept_tokens += 1
        self._remember(token)
        return token

    def _refresh_early(self, usable: AccessToken, state: dict[str, Any]) -> AccessToken:
        """Single flight: the token still works, so at most one process refreshes it and nobody waits. Any
        failure keeps the token and is recorded, so nobody asks Zoho again before the back-off ends."""
        if _blocked(state, self.clock()) or not self._lock.acquire(blocking=False):
            return self._keep(usable)  # a grant just failed, or this process is refreshing already
        try:
            with self._try_lock() as locked:
                if not locked:
                    return self._keep(usable)  # another process of this machine is refreshing
                with self._lease(wait=False, since=self._last_blob) as status:
                    if status == "busy":
                        return self._keep(usable)  # another machine is refreshing
                    if status == "changed":  # another task saved since our read: take its token, or keep ours
                        return self._fresh_or_usable(self._observed_state().get("token"), fresh=True) or (
                            self._keep(usable)
                        )
                    # this machine's lock holder before us may have refreshed already (no shared store: no lease)
                    local = self._decode(self._load_local())
                    found = self._fresh_or_usable(local.get("token"), fresh=True)
                    if found or _blocked(local, self.clock()):
                        return found or self._keep(usable)
                    self.stats.early_refreshes += 1
                    try:
                        token = self._grant()
                    except ZohoCRMError as exc:
                        self._record_failure(exc)
                        log.warning("Early token refresh failed (%s); keeping the current token.", exc)
                        return self._keep(usable)
                    self._save_state(token)
                    self._remember(token)
                    return token
        finally:
            self._lock.release()

    def _refresh_now(self) -> AccessToken:
        """No working token in this process or this machine's copy: see :meth:`_single_flight`."""
        token = self._single_flight(None)
        if token is None:  # pragma: no cover - only an invalidation ends without a token
            raise AssertionError("no token")
        return token

    def _single_flight(self, rejected: _Rejection | None) -> AccessToken | None:
        """Under this machine's lock, take what the previous holder left, else the shared store's token, else
        wait for whoever refreshes, or refresh (or, for ``rejected``, replace the token Zoho rejected)."""
        wait_unlocked = getattr(self.store, "wait_unlocked", None)
        if wait_unlocked is not None and wait_unlocked(self.key):
            # another process of this machine was at work: what it left is usually a token for all of us
            found = self._fresh_or_usable(self._decode(self._load_local()).get("token"))
            if found:
                return found
        with self._lock, self.store.lock(self.key):
            # whoever held this machine's lock may have left a fresh token: take it, no Task API call, no lease
            local = self._decode(self._load_local())
            found = self._fresh_or_usable(local.get("token"))
            if found:
                return found
            state = self._load_state()
            for _ in range(5):
                found = None
                if not _behind_local(state, local, self.clock()):
                    found = self._fresh_or_usable(state.get("token"))
                if found:
                    self._share_locally()
                    return found
                if rejected is not None and rejected.final:
                    if not (_holds(state, rejected.value) or _holds(local, rejected.value)):
                        return None  # gone already (replaced, dropped or recorded by another task)
                else:
                    self._raise_if_blocked(state)
                    self._raise_if_blocked(
                        local
                    )  # this machine's failure (its Variable write may have failed)
                with self._lease(wait=True, since=self._last_blob) as status:
                    if status != "changed":
                        # the lease's own read matched ours (``since``): it is the state we refresh from
                        return self._replace(state, local, rejected)
                # the holder finished: look at what it left (read by the lease wait: no second round trip)
                state = self._observed_state()
            return self._replace(state, local, rejected)

    def _replace(
        self, state: dict[str, Any], local: dict[str, Any], rejected: _Rejection | None
    ) -> AccessToken | None:
        """The lease holder's step: grant, or (the stored token is the rejected one) drop it or record that a
        replacement was rejected at once. The shared state first; this machine's copy if only it holds the
        rejected token (the Variable write that shared it failed)."""
        where = next((s for s in (state, local) if rejected and _holds(s, rejected.value)), None)
        now = self.clock()
        if rejected is None or where is None:
            if rejected is not None and rejected.final:
                return None
            # a replacement whose grant failed left the first 401 in its failure record: this grant is still
            # that one replacement (else a rejection would cost a token per failed replacement)
            return self._grant_and_share(replaces=_carried_401(state, now) or _carried_401(local, now))
        token = cast(AccessToken, where["token"])
        at_once = now - token.issued_at < REJECTED_AT_ONCE_SECONDS
        first_401 = str(where.get("replaces") or "")  # the token replaced one rejected at once
        if at_once and ((first_401 and not rejected.accepted) or rejected.final):
            blocked = {"kind": "rejected", "message": first_401 or rejected.message, "at": now}
            self._save_state(None, {**blocked, "until": now + REFUSAL_MEMORY_SECONDS})
            if rejected.final:
                return None
            self._raise_if_blocked({"blocked": {**blocked, "until": now + REFUSAL_MEMORY_SECONDS}})
        if rejected.final:
            self._save_state(None, state.get("blocked"))
            return None
        first = {"message": rejected.message, "until": now + REFUSAL_MEMORY_SECONDS}
        return self._grant_and_share(replaces=first if at_once else None)

    def _observed_state(self) -> dict[str, Any]:
        """The shared state a lease wait ended on ("changed"), without reading it again if the store kept it."""
        observed = getattr(self.store, "observed", None)
        blob = observed(self.key) if observed is not None else None
        if blob is None:
            return self._load_state()
        self._last_blob = blob
        return self._decode(blob)

    def _fresh_or_usable(self, shared: object, *, fresh: bool = False) -> AccessToken | None:
        now = self.clock()
        if (
            isinstance(shared, AccessToken)
            and shared.value not in self._rejected
            and (not self._wants_refresh(shared, now) if fresh else self._usable(shared, now))
        ):
            return self._shared_hit(shared)
        return None

    def _raise_if_blocked(self, state: dict[str, Any]) -> None:
        """A grant failed, was throttled or refused, or a new token was rejected, a moment ago: fail the same
        way without asking Zoho (asking again would extend a throttle or burn a grant)."""
        now = self.clock()
        blocked: dict[str, Any] = state.get("blocked") or {}
        if not _blocked(state, now):
            return
        left = float(blocked["until"]) - now
        kind, message = blocked.get("kind"), str(blocked.get("message") or "")
        if kind == "throttled":
            raise self._throttled(left)
        if kind == "refused":
            raise self._grant_error({"error": blocked.get("code")}, int(blocked.get("status") or 200))
        note = f" (recorded in the token store; no new token is asked for {left:.0f} s more)"
        if kind == "rejected":
            raise ZohoAuthError(
                _rejected(message) + note, status=401, code="INVALID_TOKEN", fix=DATA_CENTER_FIX
            )
        raise ZohoTransportError(f"The last token request failed: {message}{note}")

    def _grant_and_share(self, *, replaces: dict[str, Any] | None = None) -> AccessToken:
        """Grant and save; ``replaces``: the 401 of a token rejected at once that this one replaces (its
        ``message``, and ``until`` when its memory ends). A failed grant carries it over in its failure record."""
        try:
            token = self._grant()
        except ZohoCRMError as exc:
            found = self._record_failure(exc, first_401=replaces)
            if found:  # another process saved a working token meanwhile (no lease, or claims interleaved)
                return self._shared_hit(found)
            raise
        self._save_state(token, replaces=str(replaces["message"]) if replaces else "")
        self._remember(token)
        return token

    def _record_failure(
        self, exc: ZohoCRMError, *, first_401: dict[str, Any] | None = None
    ) -> AccessToken | None:
        """Record a failed grant next to the token the store holds now (read again: another task may have saved
        one); that token if it is usable. Nobody asks Zoho again before the back-off ends. ``first_401``: the
        grant replaced a token rejected at once; the record keeps that 401, so the next grant (after the
        back-off) is still the one replacement, and its rejection at once is recorded instead of replaced."""
        now = self.clock()
        state = self._load_state()
        token = state.get("token") if isinstance(state.get("token"), AccessToken) else None
        dropped = None
        if token is not None and token.value in self._rejected:
            dropped, token = token, None  # Zoho's API rejected it: nobody should use it
        blocked: dict[str, Any]
        if isinstance(exc, ZohoTokenThrottledError):
            blocked = {"kind": "throttled", "until": now + exc.retry_after}
        elif isinstance(exc, ZohoRefreshTokenError | ZohoInvalidClientError):
            blocked = {"kind": "refused", "code": exc.code, "status": exc.status}
            blocked["until"] = now + REFUSAL_MEMORY_SECONDS
        else:
            blocked = {"kind": "failed", "message": exc.message, "until": now + FAILED_GRANT_BACKOFF_SECONDS}
        if _blocked(state, now) and float(state["blocked"]["until"]) > float(blocked["until"]):
            blocked = state["blocked"]  # a longer block (a throttle) recorded meanwhile stays
        if dropped is not None and dropped.issued_at:
            # so that this machine's copy is never undone by the shared store's older state (_behind_local)
            blocked = {**blocked, "dropped": dropped.issued_at}
        carried = first_401 or _carried_401(state, now)
        if carried:
            blocked = {**blocked, "first_401": carried}
        self._save_state(token, blocked)
        return token if token is not None and self._usable(token, now) else None

    @contextlib.contextmanager
    def _try_lock(self) -> Iterator[bool]:
        try_lock = getattr(self.store, "try_lock", None)
        if try_lock is None:
            with self.store.lock(self.key):
                yield True
            return
        with cast(contextlib.AbstractContextManager[bool], try_lock(self.key)) as locked:
            yield locked

    @contextlib.contextmanager
    def _lease(self, *, wait: bool, since: str | None = None) -> Iterator[LeaseStatus]:
        """The store's cross-machine lease, if it has one; a grant under it ends before the lease does."""
        lease = getattr(self.store, "lease", None)
        if lease is None:
            yield "held"
            return
        hold = self.grant_budget + SAVE_SECONDS  # the grant, then saving its result
        with lease(self.key, hold_seconds=hold, wait=wait, since=since) as status:
            until = (
                getattr(self.store, "lease_until", lambda key: None)(self.key) if status == "held" else None
            )
            self._deadline = float(until) - SAVE_SECONDS if until else None
            try:
                yield cast(LeaseStatus, status)
            finally:
                self._deadline = None

    def _share_locally(self) -> None:
        """Copy the shared state just read into this machine's cache, so this machine's other processes find it
        without a Task API call."""
        save_local = getattr(self.store, "save_local", None)
        if save_local is not None and self._last_blob:
            with contextlib.suppress(Exception):
                save_local(self.key, self._last_blob)

    def _load_local(self) -> str | None:
        load_local = getattr(self.store, "load_local", None)
        if load_local is None:
            return None
        try:
            return cast(str | None, load_local(self.key))
        except Exception:
            return None

    # -- internals --------------------------------------------------------------------------------------------

    def _mask(self, value: str) -> None:
        """Register with the log masker once per value (inside a task each call is a round trip)."""
        if self.on_secret and value not in self._masked:
            self.on_secret(value)
            self._masked.add(value)

    def _remember(self, token: AccessToken) -> None:
        """Keep ``token`` in process memory (``get_token`` masks it on the way out)."""
        self._memory = token

    def _load_state(self) -> dict[str, Any]:
        try:
            blob = self.store.load(self.key)
        except Exception as exc:  # a broken store must never stop the job: fall back to asking Zoho
            log.warning("Zoho token store unavailable (%s); continuing without it.", type(exc).__name__)
            return {}
        self._last_blob = blob
        return self._decode(blob)

    def _decode(self, blob: str | None) -> dict[str, Any]:
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
                issued_at=float(data.get("issued_at") or 0),
            )
        blocked = data.get("blocked")
        if not blocked and data.get("throttled_until"):  # written by an older version
            blocked = {"kind": "throttled", "until": float(data["throttled_until"])}
        return {
            "token": token,
            "blocked": blocked if isinstance(blocked, dict) else None,
            "replaces": str(data.get("replaces") or "") if token else "",
        }

    def _save_state(
        self, token: AccessToken | None, blocked: dict[str, Any] | None = None, *, replaces: str = ""
    ) -> None:
        blob = self._encode(token, blocked, replaces=replaces)
        try:
            self.store.save(self.key, blob)
        except Exception as exc:
            log.warning("Could not share the Zoho token (%s); other tasks may refresh.", type(exc).__name__)

    def _encode(
        self, token: AccessToken | None, blocked: dict[str, Any] | None = None, *, replaces: str = ""
    ) -> str:
        data: dict[str, Any] = {"blocked": blocked} if blocked else {}
        if token and replaces:
            data["replaces"] = replaces  # the 401 of the token this one replaced (see ``invalidate``)
        if token:
            data.update(
                access_token=token.value,
                api_domain=token.api_domain,
                expires_at=token.expires_at,
                scope=token.scope,
                issued_at=token.issued_at,
            )
        return self._cipher.encrypt(json.dumps(data).encode()).decode()

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
        """One POST to the accounts server, never following a redirect (it would resend the secrets).

        Retried only when the request cannot have reached Zoho: the connection was never made (DNS, refused,
        TLS handshake, connect timeout), or Zoho answered 503 (it did not process the request). A read timeout,
        a reset after sending, or another 5xx may have minted a token, and each grant counts against Zoho's 10
        per 10 minutes: those are not retried. The whole grant ends by its deadline (``grant_budget`` after the
        lease was asked for, so the lease outlasts it), no attempt starts that could end past it, and there is no
        wait after the last one.
        """
        deadline, self._deadline = self._deadline or self.clock() + self.grant_budget, None
        failures: list[str] = []
        for attempt in range(GRANT_ATTEMPTS):
            if deadline <= self.clock():
                raise ZohoTransportError(
                    "The token request was not sent: its deadline passed before (the process was paused longer"
                    " than the lease that protects the grant). Run the task again."
                )
            try:
                response = self.run_within(
                    deadline - self.clock(),
                    lambda: self.session.post(
                        url, timeout=self.timeout, auth=None, allow_redirects=False, **kwargs
                    ),
                )
            except DeadlinePassed:
                raise GrantNotAnsweredError(
                    f"Zoho's accounts server {self.endpoints.accounts_url} did not answer within the grant's deadline"
                    f" ({self.grant_budget:.0f} s). Not retried: Zoho may have issued a token for it, and each grant"
                    " counts against its 10 per 10 minutes."
                ) from None
            except requests.RequestException as exc:
                kind, reached = _failure_kind(exc)
                failures.append(kind)
                if reached:
                    raise GrantNotAnsweredError(
                        f"Zoho's accounts server {self.endpoints.accounts_url} did not answer ({kind}) after the"
                        " request was sent. Not retried: Zoho may have issued a token for it, and each grant"
                        " counts against its 10 per 10 minutes. Check the network or proxy between the workers"
                        f" and {_host(self.endpoints.accounts_url)}."
                    ) from None
            else:
                if 300 <= response.status_code < 400:
                    location = response.headers.get("Location", "")
                    raise ZohoResponseError(
                        f"Zoho's accounts server answered HTTP {response.status_code}, a redirect to"
                        f" {_host(location) or 'an unnamed location'}. Redirects are never followed (they would"
                        " resend the client secret and refresh token). Check the connection's data_center and"
                        " accounts_url, and any proxy in between.",
                        status=response.status_code,
                    )
                if response.status_code < 500:
                    return response
                if response.status_code != 503:
                    raise ZohoServerError(
                        f"Zoho's accounts server {self.endpoints.accounts_url} answered HTTP"
                        f" {response.status_code}. Not retried: the request may have been processed and a token"
                        " issued, and each grant counts against Zoho's 10 per 10 minutes.",
                        status=response.status_code,
                    )
                failures.append("HTTP 503")
            if attempt == GRANT_ATTEMPTS - 1:
                break
            wait = grant_backoff(attempt)
            one_more = worst_case_grant_seconds(self.timeout, 1)
            if self.clock() + wait + one_more > deadline:
                break
            self.sleep(wait)
        raise ZohoTransportError(
            f"Could not reach Zoho's accounts server {self.endpoints.accounts_url}: {_describe(failures)} in"
            f" {len(failures)} attempt(s). {_advice(failures, self.endpoints)}"
        )

    def _grant(self) -> AccessToken:
        """The refresh-token grant. Zoho reports most failures with HTTP 200: no access_token = failure."""
        self.stats.refreshes += 1
        creds = self.credentials
        asked_at = self.clock()
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
        self._mask(str(access_token))
        api_domain = self.endpoints.api_domain_override or check_token_api_domain(
            str(body.get("api_domain") or self.endpoints.data_center.api_domain), self.endpoints
        )
        return AccessToken(
            value=str(access_token),
            api_domain=api_domain,
            expires_at=asked_at
            + _expires_in_seconds(body),  # counted from the request: errs on the early side
            scope=str(body.get("scope", "")),
            issued_at=asked_at,
        )

    def _grant_error(self, body: dict[str, Any], status: int) -> ZohoAuthError:
        error = str(body.get("error") or "")
        description = str(body.get("error_description") or "")
        dc = self.endpoints.data_center
        if error == "invalid_client":
            return ZohoInvalidClientError(
                f"Zoho's {dc.name!r} accounts server ({self.endpoints.accounts_url}) rejected the connection's"
                " client ID or secret (invalid_client): one is mistyped, or the client was created in another"
                " data center.",
                status=status,
                code=error,
                fix="Copy the client ID and secret of your Self Client from the Zoho API console into the"
                f" connection's login and password; if you log in to Zoho CRM elsewhere than {dc.web_url},"
                " set the connection's data_center to that data center (a client exists in one only).",
            )
        if error == "invalid_code":
            return ZohoRefreshTokenError(
                "Zoho rejected the connection's refresh token (invalid_code): it was revoked, or is mistyped, or"
                " was issued to another client or in another data center.",
                status=status,
                code=error,
                fix="Generate a new refresh token with this client (README: 'Getting a refresh token') and put"
                " it in the connection's extra refresh_token.",
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


@dataclass(frozen=True)
class _Rejection:
    """A token Zoho's API rejected, its answer, whether the caller will retry with a replacement, and whether
    the caller saw the API accept it before."""

    value: str = field(repr=False)
    message: str
    final: bool
    accepted: bool


def _holds(state: dict[str, Any], value: str) -> bool:
    token = state.get("token")
    return isinstance(token, AccessToken) and token.value == value


def _blocked(state: dict[str, Any], now: float) -> bool:
    blocked = state.get("blocked") or {}
    return float(blocked.get("until") or 0) > now


def _behind_local(state: dict[str, Any], local: dict[str, Any], now: float) -> bool:
    """The shared ``state`` is older than this machine's copy: the copy holds a token issued after the shared
    one, a live record of a rejection at once made after the shared token was issued, or a live failure record
    whose writer dropped the shared token (or a later one) as rejected. A Variable write of this machine failed
    (Variable API errors) and the shared store still holds what came before; taking its token, and copying it
    over this machine's copy, would undo the record and let the machine grant again within it."""
    token = state.get("token")
    if not isinstance(token, AccessToken) or not token.issued_at:
        return False
    mine = local.get("token")
    if isinstance(mine, AccessToken) and (mine.issued_at > token.issued_at or mine.value == token.value):
        return mine.value != token.value
    if not _blocked(local, now):
        return False
    blocked = local["blocked"]
    if blocked.get("kind") == "rejected":
        at = blocked.get("at") or float(blocked["until"]) - REFUSAL_MEMORY_SECONDS  # older records: no "at"
        return token.issued_at <= float(at)
    dropped = blocked.get("dropped")  # issued_at of the token the record's writer dropped as rejected
    return dropped is not None and token.issued_at <= float(dropped)


def _carried_401(state: dict[str, Any], now: float) -> dict[str, Any] | None:
    """The first 401 a failed replacement left in its failure record (see ``_record_failure``), while it lasts."""
    carried = (state.get("blocked") or {}).get("first_401")
    if isinstance(carried, dict) and carried.get("message") and float(carried.get("until") or 0) > now:
        return carried
    return None


def _rejected(message: str) -> str:
    return (
        f"Zoho's API rejected an access token it had just issued ({message or 'INVALID_TOKEN'}): the token comes"
        " from another data center than the API domain it was sent to, so a new one would be rejected too."
    )


#: What to do when the API domain and the token's data center disagree.
DATA_CENTER_FIX = (
    "Set the connection's data_center to the domain of your Zoho CRM login page (crm.zoho.eu: 'eu', and so on),"
    " and remove any accounts_url/api_domain override from its extra."
)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _failure_kind(exc: requests.RequestException) -> tuple[str, bool]:
    """What failed, and whether the request may have reached Zoho (then it must not be resent)."""
    import urllib3.exceptions as u3

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timeout", False
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read timeout", True
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed", False
    if isinstance(exc, requests.exceptions.ProxyError):
        return "proxy refused or failed", False
    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, u3.MaxRetryError):
        reason = reason.reason
    if isinstance(reason, u3.NameResolutionError):
        return "DNS lookup failed", False
    if isinstance(reason, u3.NewConnectionError):
        text = str(reason).lower()
        if "refused" in text:
            return "connection refused", False
        if "name or service" in text or "resolution" in text or "nodename" in text:
            return "DNS lookup failed", False
        return "connection failed", False
    if isinstance(reason, u3.ConnectTimeoutError):
        return "connect timeout", False
    if isinstance(exc, requests.ConnectionError):
        return "connection reset after sending", True
    return type(exc).__name__, True


def _describe(failures: list[str]) -> str:
    counts: dict[str, int] = {}
    for kind in failures:
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(kind if n == 1 else f"{kind} x{n}" for kind, n in counts.items()) or "no attempt"


def _advice(failures: list[str], endpoints: Endpoints) -> str:
    host = _host(endpoints.accounts_url)
    last = failures[-1] if failures else ""
    if "DNS" in last:
        return (
            f"Check DNS on the workers for {host}, and that the connection's data_center"
            f" ({endpoints.data_center.name!r}) is right."
        )
    if "TLS" in last:
        return f"Check the CA certificates, and any TLS-intercepting proxy between the workers and {host}."
    if "refused" in last:
        return (
            f"Check that {host} is reachable from the workers (firewall, proxy settings such as HTTPS_PROXY)."
        )
    return (
        f"Check the network or proxy between the workers and {host}, and the connection's data_center"
        f" ({endpoints.data_center.name!r})."
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
