"""The token protocol over real HTTP against the emulator: what a grant may retry, what a throttled refresh keeps,
redirects, the cache directory, single-flight refresh, and the cross-machine lease (issues 9 and 10).

The lease tests run many "machines" as threads of this process: each has its own file cache (its own
FileTokenStore directory, so the machine lock does not help), and all share a dict that stands in for Airflow's
Variables (Airflow's Task Execution API is the real thing in tests/deployment/test_deployment.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import inspect
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3.exceptions as u3

from airflow_provider_zohocrm.hooks.token_store import VARIABLE_PREFIX, AirflowVariableTokenStore
from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.testing import Fault, ZohoCRMEmulator
from airflow_provider_zohocrm.zoho import auth as zoho_auth
from airflow_provider_zohocrm.zoho.auth import FileTokenStore, OAuthCredentials, TokenManager
from airflow_provider_zohocrm.zoho.datacenters import resolve_endpoints
from airflow_provider_zohocrm.zoho.errors import (
    ZohoConfigError,
    ZohoCRMError,
    ZohoTokenThrottledError,
    ZohoTransportError,
)
from tests.conftest import set_connection


class Clock:
    """The TokenManager's clock, moved by the test (the emulator keeps its own)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def manager(
    em: ZohoCRMEmulator,
    store: Any,
    *,
    clock: Callable[[], float] = time.time,
    timeout: tuple[float, float] = (2.0, 5.0),
    accounts_url: str | None = None,
    sleep: Callable[[float], None] | None = None,
    margin_jitter: float = 0.0,
    on_secret: Callable[[str], None] | None = None,
) -> TokenManager:
    b = em.backend
    creds = OAuthCredentials(b.client_id, b.client_secret, b.refresh_token)
    endpoints = resolve_endpoints("us", accounts_url or em.url, em.url)
    kwargs: dict[str, Any] = {"sleep": sleep} if sleep else {}
    if "margin_jitter" in inspect.signature(TokenManager).parameters:
        kwargs["margin_jitter"] = margin_jitter  # deterministic margins (the jitter is tested on its own)
    return TokenManager(
        creds,
        endpoints,
        requests.Session(),
        store=store,
        timeout=timeout,
        clock=clock,
        on_secret=on_secret,
        **kwargs,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for a condition the emulator reports (a server thread finishing), not for a fixed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


# -- issue 9 finding 4: a throttled refresh keeps a token that still works ------------------------------------


def test_throttled_early_refresh_keeps_the_working_token_and_records_the_throttle(
    emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    clock = Clock()
    store = FileTokenStore(tmp_path / "tokens")
    first = manager(emulator, store, clock=clock).get_token()
    emulator.backend.config.token_limit = 1  # Zoho's budget is used up: the next grant is throttled
    clock.offset = first.expires_at - time.time() - 200  # 200 s left: inside the 300 s refresh margin
    task = manager(emulator, store, clock=clock)
    assert task.get_token().value == first.value, "the token still works for 200 s: keep using it"
    assert emulator.backend.stats["token_throttled"] == 1
    # the throttle is recorded next to the token: other tasks use the token and do not ask Zoho again
    for _ in range(3):
        assert manager(emulator, store, clock=clock).get_token().value == first.value
    assert emulator.backend.stats["token_requests"] == 2
    # once the token really expires, the throttle is the answer, still without asking Zoho
    clock.offset += 190
    with pytest.raises(ZohoTokenThrottledError):
        manager(emulator, store, clock=clock).get_token()
    assert emulator.backend.stats["token_requests"] == 2


# -- finding 5: grants are retried only when they cannot have reached Zoho ------------------------------------


def test_grant_read_timeout_is_not_retried_so_zoho_mints_one_token(
    emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    emulator.backend.add_fault(Fault(endpoint="token", action="delay", delay=1.5, times=5))
    tm = manager(emulator, FileTokenStore(tmp_path / "t"), timeout=(2.0, 0.4))
    with pytest.raises(ZohoTransportError, match="read timeout") as info:
        tm.get_token()
    assert "Not retried" in str(info.value)
    assert emulator.backend.stats["requests"]["token"] == 1
    wait_until(lambda: len(emulator.backend.token_issue_times()) >= 1)  # the server finished its grant
    assert len(emulator.backend.token_issue_times()) == 1


class PeerSharesDuringGrant(FileTokenStore):
    """A store another machine writes to: its token appears once our (slow) grant request reached Zoho."""

    def __init__(self, directory: Path, em: ZohoCRMEmulator, peer_blob: str) -> None:
        super().__init__(directory)
        self.em, self.peer_blob = em, peer_blob

    def load(self, key: str) -> str | None:
        if self.em.backend.stats["requests"]["token"] >= 2:
            return self.peer_blob
        return None


def test_grant_read_timeout_takes_the_token_another_machine_shared(
    emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    peer_store = FileTokenStore(tmp_path / "peer")
    peer = manager(emulator, peer_store)
    peer_token = peer.get_token()
    blob = peer_store.load(peer.key)
    assert blob
    emulator.backend.add_fault(Fault(endpoint="token", action="delay", delay=1.5))
    tm = manager(emulator, PeerSharesDuringGrant(tmp_path / "me", emulator, blob), timeout=(2.0, 0.4))
    assert tm.get_token().value == peer_token.value
    assert emulator.backend.stats["requests"]["token"] == 2


def test_grant_retries_connect_failures_without_sleeping_after_the_last(
    emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    closed = _closed_port()
    sleeps: list[float] = []
    tm = manager(
        emulator,
        FileTokenStore(tmp_path / "t"),
        accounts_url=f"http://127.0.0.1:{closed}",
        sleep=sleeps.append,
    )
    with pytest.raises(ZohoTransportError) as info:
        tm.get_token()
    message = str(info.value)
    assert "connection refused" in message and "3 attempt(s)" in message, message
    assert "firewall" in message or "proxy" in message
    assert len(sleeps) == 2, "a wait between attempts, none after the last"


def test_grant_retries_503_but_not_500(emulator: ZohoCRMEmulator, tmp_path: Path) -> None:
    emulator.backend.add_fault(Fault(endpoint="token", action="503"))
    manager(emulator, FileTokenStore(tmp_path / "a"), sleep=lambda s: None).get_token()
    assert emulator.backend.stats["requests"]["token"] == 2
    emulator.backend.add_fault(Fault(endpoint="token", action="500"))
    with pytest.raises(ZohoCRMError, match="may have been processed"):
        manager(emulator, FileTokenStore(tmp_path / "b"), sleep=lambda s: None).get_token()
    assert emulator.backend.stats["requests"]["token"] == 3


@pytest.mark.parametrize(
    ("exc", "kind", "reached"),
    [
        (requests.exceptions.ReadTimeout(), "read timeout", True),
        (requests.exceptions.ConnectTimeout(), "connect timeout", False),
        (requests.exceptions.SSLError(), "TLS handshake failed", False),
        (
            requests.ConnectionError(
                u3.MaxRetryError(None, "/", u3.NameResolutionError("accounts.zoho.eu", None, OSError("x")))  # type: ignore[arg-type]
            ),
            "DNS lookup failed",
            False,
        ),
        (
            requests.ConnectionError(
                u3.MaxRetryError(None, "/", u3.NewConnectionError(None, "[Errno 111] Connection refused"))  # type: ignore[arg-type]
            ),
            "connection refused",
            False,
        ),
        (
            requests.ConnectionError(u3.ProtocolError("Connection aborted.", ConnectionResetError())),
            "connection reset after sending",
            True,
        ),
    ],
)
def test_grant_failures_are_named_and_classified(exc: Exception, kind: str, reached: bool) -> None:
    assert zoho_auth._failure_kind(exc) == (kind, reached)  # type: ignore[arg-type]


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- finding 6: the token POST never follows a redirect --------------------------------------------------------


class Recorder(http.server.ThreadingHTTPServer):
    """A loopback server that records what reaches it; answers 307 to ``redirect_to`` when set."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.redirect_to = redirect_to
        self.received: list[bytes] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.append(self.path.encode() + b"?" + body)
                if outer.redirect_to:
                    self.send_response(307)
                    self.send_header("Location", outer.redirect_to + self.path)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def thief() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("operation", ["grant", "revoke"])
def test_token_redirect_is_refused_and_secrets_never_reach_the_location(
    emulator: ZohoCRMEmulator, tmp_path: Path, thief: Recorder, operation: str
) -> None:
    redirector = Recorder(redirect_to=f"http://localhost:{thief.port}")
    try:
        tm = manager(
            emulator, FileTokenStore(tmp_path / "t"), accounts_url=f"http://127.0.0.1:{redirector.port}"
        )
        with pytest.raises(ZohoCRMError) as info:
            tm.get_token() if operation == "grant" else tm.revoke_refresh_token()
        secret = emulator.backend.client_secret.encode()
        assert not any(secret in r for r in thief.received), "the client secret reached the redirect target"
        assert thief.received == [], "the redirect target received the request"
        assert len(redirector.received) == 1
        assert "redirect to localhost" in str(info.value)
    finally:
        redirector.shutdown()
        redirector.server_close()


# -- finding 8: the cache directory ---------------------------------------------------------------------------


def _foreign_directory(tmp_path: Path) -> Path:
    """A directory another user owns, whoever runs the tests: as root, a 0700 one given away with ``chown`` (so
    only the owner check can refuse it); as anyone else, the root directory (root's, and never writable)."""
    if os.getuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        return foreign
    root = Path(os.sep)
    assert root.stat().st_uid != os.getuid()
    return root


def test_cache_dir_must_be_private_and_owned(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(ZohoConfigError, match=r"mode 0755; it must be 0700"):
        FileTokenStore(loose)
    foreign = _foreign_directory(tmp_path)
    owner = foreign.stat().st_uid
    with pytest.raises(ZohoConfigError, match=rf"belongs to uid {owner}, not to this user"):
        FileTokenStore(foreign)
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(ZohoConfigError, match="not a plain directory"):
        FileTokenStore(tmp_path / "link")
    fresh = FileTokenStore(tmp_path / "new" / "cache")
    assert oct(fresh.directory.stat().st_mode & 0o777) == oct(0o700)


def test_cache_files_are_never_opened_through_a_symlink(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "cache")
    victim = tmp_path / "victim"
    victim.write_text("do not touch")
    (store.directory / "k.token").symlink_to(victim)
    with pytest.raises(ZohoConfigError, match="symlink"):
        store.load("k")
    (store.directory / "k.lock").symlink_to(victim)
    with pytest.raises(ZohoConfigError, match="symlink"), store.lock("k"):
        pass
    store.save("k", "blob")  # replaces the link itself
    assert victim.read_text() == "do not touch"
    assert store.load("k") == "blob"


def test_cache_dir_from_env_and_from_connection_extra(
    emulator: ZohoCRMEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZOHOCRM_TOKEN_CACHE_DIR", str(tmp_path / "from-env"))
    assert FileTokenStore().directory == tmp_path / "from-env"
    set_connection(monkeypatch, emulator, token_cache_dir=str(tmp_path / "from-extra"))
    hook = ZohoCRMHook()
    hook.get_org()
    assert hook.tokens.store.files.directory == tmp_path / "from-extra"  # type: ignore[attr-defined]
    assert list((tmp_path / "from-extra").glob("*.token"))


# -- issue 10: single-flight refresh and the cross-machine lease ------------------------------------------------


class FakeVariables:
    """Airflow's Variables as a dict (set/get/delete; last writer wins, no compare-and-set), optionally slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.values: dict[str, str] = {}
        self.delay = delay
        self.writes: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        time.sleep(self.delay)
        with self._lock:
            return self.values.get(key, default)

    def set(self, key: str, value: str, description: str | None = None) -> None:
        time.sleep(self.delay)
        with self._lock:
            self.values[key] = value
            self.writes.append((key, value))

    def delete(self, key: str) -> None:
        time.sleep(self.delay)
        with self._lock:
            self.values.pop(key, None)


class MachineStore(AirflowVariableTokenStore):
    """The hook's store as it runs inside a task, with FakeVariables for the Task Execution API."""

    def __init__(self, directory: Path, variables: FakeVariables, **kwargs: Any) -> None:
        super().__init__(FileTokenStore(directory), **kwargs)
        self.variables = variables

    def _use_variables(self) -> bool:
        return True

    def _variable(self) -> Any:
        return self.variables


def race(n: int, make: Callable[[int], TokenManager]) -> list[tuple[str, float]]:
    """``n`` managers call get_token at the same instant (a barrier); (token value, seconds) per manager."""
    managers = [make(i) for i in range(n)]
    barrier = threading.Barrier(n)
    results: list[tuple[str, float]] = [("", 0.0)] * n

    def run(i: int) -> None:
        barrier.wait()
        started = time.monotonic()
        results[i] = (managers[i].get_token().value, time.monotonic() - started)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(value for value, _ in results), "every manager got a token"
    return results


def test_expiry_does_not_stampede_one_process_refreshes_the_others_keep_working(
    emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    clock = Clock()
    store = FileTokenStore(tmp_path / "tokens")
    old = manager(emulator, store, clock=clock).get_token()
    clock.offset = old.expires_at - time.time() - 100  # every task reaches the margin at the same moment
    emulator.backend.add_fault(Fault(endpoint="token", action="delay", delay=1.0))  # a slow refresh
    results = race(8, lambda i: manager(emulator, store, clock=clock))
    values = [value for value, _ in results]
    assert emulator.backend.stats["token_requests"] == 2, "one refresh for all"
    assert values.count(old.value) == 7, "nobody waited for the refresh: the old token still works"


def test_machine_lock_wait_that_ends_with_a_fresh_token_takes_no_lease(
    emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    variables = FakeVariables()
    emulator.backend.add_fault(Fault(endpoint="token", action="delay", delay=0.5))
    race(4, lambda i: manager(emulator, MachineStore(tmp_path / "one-machine", variables)))
    assert emulator.backend.stats["token_requests"] == 1
    lease_writes = [k for k, value in variables.writes if '"lease"' in value]  # claims (no secret in them)
    assert len(lease_writes) == 1, (
        f"only the refreshing task took the lease: {len(lease_writes)} lease writes"
    )


def test_cold_race_only_each_machines_lock_holder_calls_the_task_api(
    emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """The cold-race latency is made of Task API round trips, and a burst of them queues at the api-server. A
    task whose machine has nothing cached waits for that machine's lock before it asks the Variable API: the
    holder asks for the whole machine, and the tasks that waited find its token in the machine's copy."""
    variables = FakeVariables(delay=0.02)
    emulator.backend.add_fault(Fault(endpoint="token", action="delay", delay=0.3))
    stores: list[MachineStore] = []

    def make(i: int) -> TokenManager:
        stores.append(MachineStore(tmp_path / f"machine-{i % 3}", variables))
        return manager(emulator, stores[-1])

    race(12, make)
    assert emulator.backend.stats["token_requests"] == 1
    callers = [i for i, store in enumerate(stores) if store.lease_stats["variable_calls"]]
    assert len(callers) == 3, (
        f"{len(callers)} of 12 tasks called the Task API; only one per machine (3) should have"
    )


class CountingMachineStore(MachineStore):
    """Counts who asked for this machine's exclusive lock."""

    def __init__(self, directory: Path, variables: FakeVariables) -> None:
        super().__init__(directory, variables)
        self.exclusive_locks = 0

    def lock(self, key: str) -> Any:
        self.exclusive_locks += 1
        return super().lock(key)


def blocked_flock_waiters(path: Path) -> int:
    """Processes or threads waiting for a flock on ``path`` (the kernel's own list, /proc/locks)."""
    inode = f":{os.stat(path).st_ino} "
    with open("/proc/locks") as locks:
        return sum(1 for line in locks if "->" in line and inode in line)


def test_waiters_on_the_machine_lock_wake_together_and_mask_outside_it(
    emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """Processes that found this machine's lock taken wait on a shared lock: when the holder leaves a token,
    they all take it without the exclusive lock, without a Task API call, and register it with the log masker
    (a supervisor round trip inside a task) after the lock, so nobody queues behind another's masking."""
    variables = FakeVariables()
    machine = tmp_path / "machine"
    first = manager(emulator, MachineStore(machine, variables))
    token = first.get_token()
    files = FileTokenStore(machine)
    blob = files.load(first.key)
    assert blob
    files.delete(first.key)
    variables.values.clear()
    lock_free_at_mask: list[bool] = []

    def on_secret(value: str) -> None:
        if value == token.value:  # is anyone (this very thread included) holding the lock exclusively?
            fd = os.open(machine / f"{first.key}.lock", os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                lock_free_at_mask.append(True)
            except BlockingIOError:
                lock_free_at_mask.append(False)
            finally:
                os.close(fd)  # closing drops the shared lock

    stores = [CountingMachineStore(machine, variables) for _ in range(3)]
    waiters = [manager(emulator, store, on_secret=on_secret) for store in stores]
    got: list[str] = []
    with files.lock(first.key):  # this machine's lock holder, mid-refresh
        threads = [threading.Thread(target=lambda m=m: got.append(m.get_token().value)) for m in waiters]
        for t in threads:
            t.start()
        wait_until(lambda: blocked_flock_waiters(machine / f"{first.key}.lock") == 3)
        files.save(first.key, blob)  # the holder leaves its token
    for t in threads:
        t.join(timeout=30)
    assert got == [token.value] * 3
    assert emulator.backend.stats["token_requests"] == 1
    assert [store.exclusive_locks for store in stores] == [0, 0, 0]
    assert [store.lease_stats["variable_calls"] for store in stores] == [0, 0, 0]
    assert lock_free_at_mask == [True, True, True]


@pytest.mark.parametrize(
    ("variable_delay", "token_delay"),
    [(0.0, 0.0), (0.0, 2.0), (0.15, 0.0)],
    ids=["plain", "grant-slower-than-lease", "slow-variables"],
)
def test_cold_race_across_machines_grants_at_most_twice(
    emulator: ZohoCRMEmulator, tmp_path: Path, variable_delay: float, token_delay: float
) -> None:
    variables = FakeVariables(delay=variable_delay)
    if token_delay:
        emulator.backend.add_fault(Fault(endpoint="token", action="delay", delay=token_delay, times=20))
    results = race(
        12,
        lambda i: manager(
            emulator,
            MachineStore(tmp_path / f"machine-{i % 4}", variables, lease_seconds=0.5),
            timeout=(2.0, 5.0),
        ),
    )
    grants = emulator.backend.stats["token_requests"]
    print(f"12 tasks on 4 machines, variables +{variable_delay}s, grant +{token_delay}s: {grants} grant(s)")
    assert 1 <= grants <= 2
    assert len({value for value, _ in results}) == grants


def test_lease_outlasts_the_worst_case_grant(emulator: ZohoCRMEmulator, tmp_path: Path) -> None:
    """While the grant is in flight, the lease in the Variable still has at least the grant's whole deadline to
    run (issue 20: the old test compared two computed numbers; a lease held 0 s passed it)."""
    variables = FakeVariables()
    tm = manager(emulator, MachineStore(tmp_path / "m", variables), timeout=(10.0, 60.0))
    assert tm.grant_budget == zoho_auth.worst_case_grant_seconds((10.0, 60.0)) == 3 * 70 + 0.5 + 1.0
    left_at_post: list[float] = []
    post = tm.session.post

    def post_and_look(url: str, **kwargs: Any) -> requests.Response:
        raw = variables.values[VARIABLE_PREFIX + tm.key]
        left_at_post.append(float(json.loads(raw)["lease"]["until"]) - time.time())
        return post(url, **kwargs)

    tm.session.post = post_and_look  # type: ignore[method-assign]
    tm.get_token()
    assert len(left_at_post) == 1
    assert left_at_post[0] >= tm.grant_budget, (
        f"the lease ends {left_at_post[0]:.1f} s after the POST; the grant may take {tm.grant_budget:.1f} s"
    )


class Trickle(http.server.ThreadingHTTPServer):
    """A token endpoint that answers one byte at a time: requests' read timeout (per recv) never fires."""

    def __init__(self, seconds: float) -> None:
        self.received = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.received += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"access_token": "late", "expires_in": 3600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                steps = max(1, int(seconds / 0.1))
                for i in range(steps):  # the headers are out; the body arrives over ``seconds``
                    with contextlib.suppress(OSError):
                        self.wfile.write(body[i * len(body) // steps : (i + 1) * len(body) // steps])
                        self.wfile.flush()
                    time.sleep(0.1)  # the server's pace, not the test's synchronisation

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_a_grant_is_bounded_by_its_deadline_not_by_requests_timeouts(
    emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """issue 20 hole 5: a trickling answer keeps every recv under the read timeout; only the deadline stops it."""
    server = Trickle(seconds=8.0)
    try:
        tm = manager(
            emulator,
            FileTokenStore(tmp_path / "t"),
            accounts_url=f"http://127.0.0.1:{server.server_address[1]}",
            timeout=(0.3, 0.5),
        )
        assert tm.grant_budget < 4.0
        with pytest.raises(zoho_auth.GrantNotAnsweredError, match="deadline"):
            tm.get_token()
        assert server.received == 1, "not retried: Zoho may have minted a token"
    finally:
        server.shutdown()
        server.server_close()


def test_token_rejected_by_zoho_is_dropped_from_every_machines_copy(
    conn_env: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """Machines read their own cache first: a token Zoho revoked must not linger in another machine's copy."""
    variables = FakeVariables()
    ZohoCRMHook(token_store=MachineStore(tmp_path / "a", variables)).get_org()  # machine A: token 1
    ZohoCRMHook(token_store=MachineStore(tmp_path / "b", variables)).get_org()  # machine B copies it
    conn_env.backend.revoke_access_tokens()
    ZohoCRMHook(token_store=MachineStore(tmp_path / "a", variables)).get_org()  # A: rejected → token 2
    assert conn_env.backend.stats["token_requests"] == 2
    ZohoCRMHook(token_store=MachineStore(tmp_path / "b", variables)).get_org()  # B: its copy is stale
    ZohoCRMHook(token_store=MachineStore(tmp_path / "b", variables)).get_org()
    assert conn_env.backend.stats["token_requests"] == 2, "B moved to token 2 without a grant of its own"
