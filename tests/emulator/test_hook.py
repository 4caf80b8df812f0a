"""ZohoCRMHook and the protocol client over real HTTP against the emulator."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import requests

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.testing import (
    BOUNCED_VIEW_ID,
    Fault,
    ZohoCRMEmulator,
    expected_outcome,
    seed_demo_org,
)
from airflow_provider_zohocrm.zoho import (
    FileTokenStore,
    ZohoConfigError,
    ZohoRateLimitError,
    ZohoRefreshTokenError,
    ZohoRequestError,
    ZohoScopeError,
    ZohoServerError,
    ZohoTokenThrottledError,
    ZohoTransportError,
)
from tests.conftest import assert_no_secrets, set_connection


def requests_of(em: ZohoCRMEmulator, endpoint: str) -> int:
    return int(em.backend.stats["requests"][endpoint])


def test_test_connection_proves_credentials(conn_env: ZohoCRMEmulator, token_store: FileTokenStore) -> None:
    ok, message = ZohoCRMHook(token_store=token_store).test_connection()
    assert ok, message
    assert conn_env.url in message
    assert requests_of(conn_env, "org") == 1
    assert requests_of(conn_env, "token") == 1


def test_wrong_client_secret_is_reported_not_retried(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, token_store: FileTokenStore
) -> None:
    conn = emulator.connection()
    conn["password"] = "wrong-secret-value"
    monkeypatch.setenv("AIRFLOW_CONN_ZOHOCRM_DEFAULT", json.dumps(conn))
    hook = ZohoCRMHook(token_store=token_store)
    ok, message = hook.test_connection()
    assert not ok
    assert "invalid_client" in message and "data center" in message
    assert "wrong-secret-value" not in message
    assert requests_of(emulator, "token") == 1
    assert requests_of(emulator, "org") == 0


@pytest.mark.parametrize("missing", ["login", "password", "refresh_token"])
def test_connection_missing_credentials_fails_before_any_call(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    conn = emulator.connection()
    if missing == "refresh_token":
        del conn["extra"]["refresh_token"]
    else:
        conn[missing] = ""
    monkeypatch.setenv("AIRFLOW_CONN_ZOHOCRM_DEFAULT", json.dumps(conn))
    with pytest.raises(ZohoConfigError, match="missing"):
        ZohoCRMHook().get_org()
    assert requests_of(emulator, "token") == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("api_domain", "https://evil.example.com"),
        ("accounts_url", "https://accounts.zoho.com.evil.net"),
        ("accounts_url", "http://accounts.zoho.com"),
        ("api_domain", "http://10.0.0.5:8080"),
        ("data_center", "mars"),
    ],
)
def test_unsafe_or_unknown_endpoints_rejected_before_any_call(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    set_connection(monkeypatch, emulator, **{field: value})
    with pytest.raises(ZohoConfigError) as info:
        ZohoCRMHook().get_org()
    assert value in str(info.value)
    assert requests_of(emulator, "token") == 0


def test_token_shared_by_hooks_of_one_connection_not_by_two_connections(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(5):  # five "tasks", one process each in real life: one token
        ZohoCRMHook(token_store=token_store).get_org()
    assert requests_of(conn_env, "token") == 1
    # a second connection (its own refresh token) never receives the first one's token
    other_rt = "1000.otherrefreshtoken0000000000000000.0000"
    conn_env.backend.add_refresh_token(conn_env.backend.client_id, other_rt, ["ZohoCRM.org.READ"])
    set_connection(monkeypatch, conn_env, conn_id="zoho_other", refresh_token=other_rt)
    ZohoCRMHook("zoho_other", token_store=token_store).get_org()
    assert requests_of(conn_env, "token") == 2
    assert len(conn_env.backend.token_issue_times(other_rt)) == 1


def test_legacy_expires_in_milliseconds_is_understood(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore
) -> None:
    conn_env.backend.config.legacy_expires = True
    hook = ZohoCRMHook(token_store=token_store)
    hook.get_org()
    token = hook.tokens.get_token()
    assert 3000 < token.expires_at - hook.tokens.clock() <= 3600


def test_throttled_refresh_fails_fast_with_wait_time(conn_env: ZohoCRMEmulator, tmp_path) -> None:
    # Ten separate machines (no shared store) each asking for a token: Zoho's limit is reached ...
    for i in range(10):
        ZohoCRMHook(token_store=FileTokenStore(tmp_path / f"m{i}")).tokens.get_token()
    shared = FileTokenStore(tmp_path / "shared")
    with pytest.raises(ZohoTokenThrottledError) as info:
        ZohoCRMHook(token_store=shared).tokens.get_token()
    assert info.value.retry_after >= 60
    assert "minute" in str(info.value)
    assert requests_of(conn_env, "token") == 11
    # ... and other processes sharing the store fail fast without asking Zoho again (no hot retry).
    with pytest.raises(ZohoTokenThrottledError):
        ZohoCRMHook(token_store=shared).tokens.get_token()
    assert requests_of(conn_env, "token") == 11
    # once the throttle passes, it works again
    conn_env.backend.advance(3600)
    ZohoCRMHook(token_store=FileTokenStore(tmp_path / "later")).get_org()


def test_expired_or_revoked_access_token_mid_run_refreshes_once(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore
) -> None:
    seed_demo_org(conn_env.backend, n_bounced=30)
    hook = ZohoCRMHook(token_store=token_store)
    hook.get_org()
    conn_env.backend.expire_access_tokens()
    hook.get_org()
    assert requests_of(conn_env, "token") == 2
    conn_env.backend.add_fault(Fault(endpoint="records", action="revoke_access_tokens"))
    ids = [r["id"] for r in hook.iter_records("Leads", cvid=BOUNCED_VIEW_ID)]
    assert len(ids) == 30
    assert requests_of(conn_env, "token") == 3
    # the new token reached the shared store: a new hook (a new task) needs none
    ZohoCRMHook(token_store=token_store).get_org()
    assert requests_of(conn_env, "token") == 3


def test_revoked_refresh_token_is_a_clear_final_error(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore
) -> None:
    hook = ZohoCRMHook(token_store=token_store)
    hook.get_org()
    conn_env.backend.revoke_refresh_token(conn_env.backend.refresh_token)
    with pytest.raises(ZohoRefreshTokenError, match="Fix: Generate a new refresh token"):
        hook.get_org()
    assert requests_of(conn_env, "token") == 2  # one refresh attempt, no loop
    # other tasks sharing the store learn it without asking Zoho again
    for _ in range(3):
        with pytest.raises(ZohoRefreshTokenError):
            ZohoCRMHook(token_store=token_store).get_org()
    assert requests_of(conn_env, "token") == 2


def test_missing_scope_names_the_scope(emulator: ZohoCRMEmulator, monkeypatch, token_store) -> None:
    rt = "1000.readonlyrefreshtoken000000000000.0000"
    emulator.backend.add_refresh_token(emulator.backend.client_id, rt, ["ZohoCRM.org.READ"])
    set_connection(monkeypatch, emulator, refresh_token=rt)
    with pytest.raises(ZohoScopeError, match=r"ZohoCRM\.send_mail\.Leads\.CREATE"):
        ZohoCRMHook(token_store=token_store).unblock_emails("Leads", ["1"], ["Email"])


@pytest.mark.parametrize("action", ["429", "500", "503", "reset", "html200", "empty200"])
def test_transient_failures_are_retried(conn_env: ZohoCRMEmulator, token_store, action: str) -> None:
    result = seed_demo_org(conn_env.backend, n_bounced=20)
    ids = result.bounced()[:10]
    unblockable = {rid for rid in ids if expected_outcome(conn_env.backend, "Leads", rid) == "unblocked"}
    conn_env.backend.add_fault(Fault(endpoint="unblock_bulk", action=action, times=2))
    items = ZohoCRMHook(token_store=token_store).unblock_emails("Leads", ids, ["Email"])
    assert [str(i["details"]["id"]) for i in items] == ids  # one answer per id, in request order
    assert requests_of(conn_env, "unblock_bulk") == 3
    assert unblockable
    for rid in ids:  # unblocked exactly once despite the repeated call, the others untouched
        assert len(conn_env.backend.unblock_events("Leads", rid)) == (1 if rid in unblockable else 0)


@pytest.mark.parametrize(
    ("action", "error"),
    [("429", ZohoRateLimitError), ("500", ZohoServerError), ("reset", ZohoTransportError)],
)
def test_retries_are_bounded_then_give_up(
    conn_env: ZohoCRMEmulator, monkeypatch, token_store, action: str, error: type[Exception]
) -> None:
    set_connection(monkeypatch, conn_env, max_attempts=3)
    conn_env.backend.add_fault(Fault(endpoint="org", action=action, times=50))
    with pytest.raises(error, match="gave up after 3 attempts"):
        ZohoCRMHook(token_store=token_store).get_org()
    assert requests_of(conn_env, "org") == 3


def test_data_errors_are_not_retried(conn_env: ZohoCRMEmulator, token_store) -> None:
    with pytest.raises(ZohoRequestError, match="INVALID_MODULE"):
        ZohoCRMHook(token_store=token_store).unblock_emails("Not_A_Module", ["1"], ["Email"])
    assert requests_of(conn_env, "unblock_bulk") == 1


def test_slow_answer_times_out_and_is_retried(conn_env: ZohoCRMEmulator, monkeypatch, token_store) -> None:
    set_connection(monkeypatch, conn_env, timeout=0.3, max_attempts=3)
    conn_env.backend.add_fault(Fault(endpoint="org", action="delay", delay=1.5, times=1))
    assert ZohoCRMHook(token_store=token_store).get_org()["company_name"]
    assert requests_of(conn_env, "org") == 2
    conn_env.backend.add_fault(Fault(endpoint="org", action="delay", delay=1.5, times=3))
    with pytest.raises(ZohoTransportError, match="read timeout"):
        ZohoCRMHook(token_store=token_store).get_org()


def test_view_paging_past_2000_records_uses_page_tokens(conn_env: ZohoCRMEmulator, token_store) -> None:
    result = seed_demo_org(conn_env.backend, n_bounced=4100)
    ids = [r["id"] for r in ZohoCRMHook(token_store=token_store).iter_records("Leads", cvid=BOUNCED_VIEW_ID)]
    assert sorted(ids) == sorted(result.bounced())
    assert len(ids) == len(set(ids)) == 4100
    assert requests_of(conn_env, "records") == 21  # ⌈4100/200⌉
    assert conn_env.backend.stats["status_counts"]["records"].get(400, 0) == 0


def test_expired_page_token_mid_scan_loses_and_repeats_nothing(
    conn_env: ZohoCRMEmulator, token_store
) -> None:
    result = seed_demo_org(conn_env.backend, n_bounced=2500)
    conn_env.backend.add_fault(Fault(endpoint="records", action="expire_page_tokens", on_call=12))
    ids = [r["id"] for r in ZohoCRMHook(token_store=token_store).iter_records("Leads", cvid=BOUNCED_VIEW_ID)]
    assert sorted(ids) == sorted(result.bounced())
    assert len(ids) == len(set(ids))


def test_coql_paging_past_2000_rows(conn_env: ZohoCRMEmulator, token_store) -> None:
    result = seed_demo_org(conn_env.backend, n_bounced=6000)
    temporary = [
        rid
        for rid in result.bounced()
        if conn_env.backend.record("Leads", rid)["fields"].get("Email_Bounce_Status") == "Temporary"
    ]
    rows = list(
        ZohoCRMHook(token_store=token_store).iter_coql(
            "select id from Leads where Email_Bounce_Status = 'Temporary'"
        )
    )
    assert sorted(r["id"] for r in rows) == sorted(temporary)
    assert len(temporary) > 2000
    assert requests_of(conn_env, "coql") == -(-len(temporary) // 2000)


def test_empty_view_is_an_empty_result(conn_env: ZohoCRMEmulator, token_store) -> None:
    seed_demo_org(conn_env.backend, n_bounced=0)
    assert list(ZohoCRMHook(token_store=token_store).iter_records("Leads", cvid=BOUNCED_VIEW_ID)) == []
    assert conn_env.backend.stats["status_counts"]["records"] == {204: 1}


def test_no_secret_in_logs_exceptions_or_reprs(
    conn_env: ZohoCRMEmulator, token_store, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    seed_demo_org(conn_env.backend, n_bounced=50)
    hook = ZohoCRMHook(token_store=token_store)
    texts = [
        repr(hook),
        repr(hook.settings),
        repr(hook.tokens),
        repr(hook.client),
        repr(hook.tokens.get_token()),
    ]
    conn_env.backend.add_fault(Fault(endpoint="unblock_bulk", action="500", times=1))
    hook.unblock_emails(
        "Leads", [r["id"] for r in hook.iter_records("Leads", cvid=BOUNCED_VIEW_ID)], ["Email"]
    )
    conn_env.backend.revoke_refresh_token(conn_env.backend.refresh_token)
    conn_env.backend.expire_access_tokens()
    with pytest.raises(ZohoRefreshTokenError) as info:
        hook.get_org()
    texts += [str(info.value), repr(info.value)]
    texts += [r.getMessage() for r in caplog.records]
    assert_no_secrets("\n".join(texts), conn_env)
    # the store holds no usable token in clear
    blob = token_store.load(hook.tokens.key) or ""
    assert_no_secrets(blob, conn_env)


def test_session_sends_no_connection_extras_as_headers(conn_env: ZohoCRMEmulator, token_store) -> None:
    session = ZohoCRMHook(token_store=token_store).get_conn()
    assert isinstance(session, requests.Session)
    assert session.auth is None
    assert not any("refresh" in k.lower() or k.lower() == "data_center" for k in session.headers)


def test_credits_remaining_header_is_tracked(conn_env: ZohoCRMEmulator, token_store) -> None:
    conn_env.backend.config.credits_per_day = 10
    hook = ZohoCRMHook(token_store=token_store)
    for _ in range(4):
        hook.get_org()
    assert hook.client.last_credits_remaining is None  # Zoho sends the header only past half the credits
    hook.get_org()
    assert hook.client.last_credits_remaining == 5
    hook.get_org()
    assert hook.client.last_credits_remaining == 4


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("run", ("org",)),
        ("run_with_advanced_retry", ({"stop": None}, "org")),
        ("run_and_check", (requests.Session(), requests.Request("GET", "http://127.0.0.1/").prepare(), {})),
        ("check_response", (requests.Response(),)),
    ],
)
def test_inherited_http_hook_request_helpers_refuse_and_point_to_the_zoho_methods(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore, method: str, args: tuple[object, ...]
) -> None:
    """HttpHook.run() would POST to the accounts server without a token; the hook's own methods are the API."""
    hook = ZohoCRMHook(token_store=token_store)
    with pytest.raises(NotImplementedError) as info:
        getattr(hook, method)(*args)
    message = str(info.value)
    assert f"ZohoCRMHook.{method}()" in message
    assert "unblock_emails" in message and "iter_records" in message and "client.request" in message
    assert sum(int(n) for n in conn_env.backend.stats["requests"].values()) == 0


# -- redirects are refused (issue 9, finding 6) ----------------------------------------------------------------


class RecordingServer:
    """Another host on 127.0.0.1 that records whatever reaches it, and answers like a Zoho org would: a client
    that followed a redirect here would get a plausible answer and never notice."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.received: list[dict[str, object]] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                received.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                payload = json.dumps({"org": [{"company_name": "not Zoho"}], "data": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _record

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def other_host():
    server = RecordingServer()
    yield server
    server.close()


@pytest.mark.parametrize("action", ["redirect_307", "redirect_308"])
@pytest.mark.parametrize("endpoint", ["org", "unblock_bulk"])
def test_api_redirect_is_an_error_naming_the_host_and_nothing_reaches_it(
    conn_env: ZohoCRMEmulator,
    token_store: FileTokenStore,
    other_host: RecordingServer,
    action: str,
    endpoint: str,
) -> None:
    from airflow_provider_zohocrm.zoho.errors import ZohoRedirectError

    seed = seed_demo_org(conn_env.backend, n_bounced=3)
    location = f"http://localhost:{other_host.port}/crm/v8/elsewhere?state=abc123"
    conn_env.backend.add_fault(Fault(endpoint=endpoint, action=action, location=location, times=5))
    hook = ZohoCRMHook(token_store=token_store)
    with pytest.raises(ZohoRedirectError) as info:
        if endpoint == "org":
            hook.get_org()
        else:
            hook.unblock_emails("Leads", seed.bounced(), ["Email"])
    message = str(info.value)
    assert f"localhost:{other_host.port}" in message and action[-3:] in message
    assert "abc123" not in message and "elsewhere" not in message  # the host, not the URL with its query
    assert other_host.received == []  # neither the call nor its Authorization header went there
    assert requests_of(conn_env, endpoint) == 1  # a redirect is not retried
    assert all(not conn_env.backend.unblock_events("Leads", rid) for rid in seed.bounced())
    assert_no_secrets(message, conn_env)


# -- the answer lost after Zoho acted (issue 9, finding 14) -----------------------------------------------------


@pytest.mark.parametrize("action", ["reset_after", "500_after"])
def test_unblock_applied_then_answer_lost_is_retried_into_one_event_and_one_outcome(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore, action: str
) -> None:
    """The retry that matters: Zoho applied the unblock, then the answer was lost. The retry must not unblock
    twice (each unblock counts against Zoho's 5 per address), and the report gives each id one outcome."""
    from airflow_provider_zohocrm.zoho.unblock import UnblockReport

    result = seed_demo_org(conn_env.backend, n_bounced=20)
    ids = result.bounced()[:10]
    unblockable = [rid for rid in ids if expected_outcome(conn_env.backend, "Leads", rid) == "unblocked"]
    assert unblockable
    conn_env.backend.add_fault(Fault(endpoint="unblock_bulk", action=action, times=1))
    items = ZohoCRMHook(token_store=token_store).unblock_emails("Leads", ids, ["Email"])
    assert requests_of(conn_env, "unblock_bulk") == 2  # the lost answer, then the retry
    report = UnblockReport(module="Leads", unblock_fields=["Email"])
    report.add_answer(ids, items)
    outcomes = {rid: o for o, rids in report.ids.items() for rid in rids}
    assert sorted(outcomes) == sorted(ids) and report.total == len(ids)  # each id exactly once
    for rid in unblockable:
        assert len(conn_env.backend.unblock_events("Leads", rid)) == 1  # applied once, by the lost call
        assert outcomes[rid] == "already_unblocked"  # what the retry hears; the README says so
    for rid in set(ids) - set(unblockable):
        assert conn_env.backend.unblock_events("Leads", rid) == []


# -- transport failures name their root cause (issue 9, finding 12) ---------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection_names_the_cause_the_attempts_and_what_to_check(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, token_store: FileTokenStore
) -> None:
    port = _closed_port()
    set_connection(monkeypatch, emulator, max_attempts=3, api_domain=f"http://127.0.0.1:{port}")
    with pytest.raises(ZohoTransportError) as info:
        ZohoCRMHook(token_store=token_store).get_org()
    message = str(info.value)
    assert "connection refused" in message.lower()
    assert f"127.0.0.1:{port}" in message
    assert "3 attempts" in message
    assert "proxy" in message and "data_center" in message
    assert_no_secrets(message, emulator)


@pytest.mark.parametrize(
    ("action", "words"),
    [("reset", "connection was reset or closed"), ("delay", "read timeout")],
)
def test_transport_failures_over_the_emulator_say_which_failure(
    conn_env: ZohoCRMEmulator,
    monkeypatch: pytest.MonkeyPatch,
    token_store: FileTokenStore,
    action: str,
    words: str,
) -> None:
    set_connection(monkeypatch, conn_env, max_attempts=2, timeout=0.3)
    conn_env.backend.add_fault(Fault(endpoint="org", action=action, delay=1.0, times=5))
    with pytest.raises(ZohoTransportError) as info:
        ZohoCRMHook(token_store=token_store).get_org()
    message = str(info.value)
    assert words in message.lower() and "2 attempts" in message
    assert requests_of(conn_env, "org") == 2
    assert_no_secrets(message, conn_env)


@pytest.fixture
def unanswering_port() -> Iterator[int]:
    """A port whose listen queue is full: the kernel drops new SYNs, so a connect times out (no sleep needed)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))  # non-blocking: EINPROGRESS, the SYN sits in the queue
        fillers.append(filler)
    yield port
    for sock in [*fillers, listener]:
        sock.close()


@pytest.mark.parametrize("failure", ["tls", "connect_timeout"])
def test_tls_and_connect_failures_name_the_cause(
    emulator: ZohoCRMEmulator,
    monkeypatch: pytest.MonkeyPatch,
    token_store: FileTokenStore,
    unanswering_port: int,
    failure: str,
) -> None:
    port = int(emulator.url.rsplit(":", 1)[1])
    api_domain, words = {
        # https to the emulator's plain-http port: the TLS handshake fails
        "tls": (f"https://127.0.0.1:{port}", "tls handshake"),
        "connect_timeout": (f"http://127.0.0.1:{unanswering_port}", "connect timeout"),
    }[failure]
    set_connection(monkeypatch, emulator, max_attempts=2, connect_timeout=0.3, api_domain=api_domain)
    with pytest.raises(ZohoTransportError) as info:
        ZohoCRMHook(token_store=token_store).get_org()
    message = str(info.value)
    assert words in message.lower() and "2 attempts" in message, message
    assert_no_secrets(message, emulator)


def test_dns_failure_is_named() -> None:
    """Pure: a real resolver failure (``.invalid`` never resolves, RFC 6761) is described as DNS."""
    from airflow_provider_zohocrm.zoho.transport import describe_transport_error

    with pytest.raises(requests.ConnectionError) as info:
        requests.get("http://zoho-crm-test.invalid/", timeout=5)
    text = describe_transport_error(info.value, "zoho-crm-test.invalid", (10.0, 60.0))
    assert text.startswith("DNS lookup failed for zoho-crm-test.invalid") and "data_center" in text


# -- Zoho rewords its NOT_ALLOWED messages (issue 9, finding 10) ------------------------------------------------


def test_reworded_not_allowed_messages_over_http_keep_their_outcomes(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_zohocrm.zoho.unblock import UnblockReport

    caplog.set_level(logging.WARNING)
    result = seed_demo_org(conn_env.backend, n_bounced=60)
    ids = result.bounced()
    expected = {rid: expected_outcome(conn_env.backend, "Leads", rid) for rid in ids}
    assert {"already_unblocked", "permanently_blocked", "limit_reached"} <= set(expected.values())
    conn_env.backend.add_fault(Fault(endpoint="unblock_bulk", action="reworded"))
    items = ZohoCRMHook(token_store=token_store).unblock_emails("Leads", ids, ["Email"])
    assert any(i.get("message") == "EMAIL ALREADY UNBLOCKED." for i in items)  # the fault did reword
    report = UnblockReport(module="Leads", unblock_fields=["Email"])
    report.add_answer(ids, items)
    got = {rid: o for o, rids in report.ids.items() for rid in rids}
    assert got == expected
    assert not [r for r in caplog.records if "does not recognise" in r.getMessage()]


def test_unknown_not_allowed_wording_over_http_is_not_allowed_and_warned(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_zohocrm.testing.admin import UNKNOWN_WORDING
    from airflow_provider_zohocrm.zoho.unblock import UnblockReport

    caplog.set_level(logging.WARNING)
    result = seed_demo_org(conn_env.backend, n_bounced=40)
    ids = result.bounced()
    refused = [rid for rid in ids if expected_outcome(conn_env.backend, "Leads", rid) != "unblocked"]
    conn_env.backend.add_fault(Fault(endpoint="unblock_bulk", action="unknown_wording"))
    items = ZohoCRMHook(token_store=token_store).unblock_emails("Leads", ids, ["Email"])
    report = UnblockReport(module="Leads", unblock_fields=["Email"])
    report.add_answer(ids, items)
    assert sorted(report.ids["not_allowed"]) == sorted(refused)
    warned = [r.getMessage() for r in caplog.records if "does not recognise" in r.getMessage()]
    assert len(warned) == 1 and repr(UNKNOWN_WORDING) in warned[0] and f"{len(refused)} record" in warned[0]
