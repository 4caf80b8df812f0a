"""Every data center's URLs, over real HTTP: Zoho's hosts are routed to the emulator (like curl --resolve)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.testing import ZohoCRMEmulator
from airflow_provider_zohocrm.zoho import DATA_CENTERS, ZohoConfigError
from airflow_provider_zohocrm.zoho.datacenters import ensure_safe_url, get_data_center, resolve_endpoints


class RouteToEmulator(HTTPAdapter):
    """Sends every request to the emulator, keeping the URL the client meant, for the test to read."""

    def __init__(self, emulator_url: str) -> None:
        super().__init__()
        self.target = urlsplit(emulator_url)
        self.seen: list[str] = []

    def send(self, request: requests.PreparedRequest, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.seen.append((request.url or "").split("?")[0])
        parts = urlsplit(request.url or "")
        request.url = urlunsplit((self.target.scheme, self.target.netloc, parts.path, parts.query, ""))
        return super().send(request, *args, **kwargs)


def zoho_connection(emulator: ZohoCRMEmulator, data_center: str) -> str:
    conn = emulator.connection()
    for key in ("accounts_url", "api_domain"):
        del conn["extra"][key]
    conn["extra"]["data_center"] = data_center
    return json.dumps(conn)


@pytest.mark.parametrize("dc", sorted(DATA_CENTERS))
def test_each_data_center_uses_its_own_accounts_server_and_api_domain(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, token_store, dc: str
) -> None:
    center = DATA_CENTERS[dc]
    emulator.backend.config.advertised_api_domain = center.api_domain
    monkeypatch.setenv("AIRFLOW_CONN_ZOHOCRM_DEFAULT", zoho_connection(emulator, dc))
    route = RouteToEmulator(emulator.url)
    hook = ZohoCRMHook(token_store=token_store, adapter=route)
    ok, message = hook.test_connection()
    assert ok, message
    assert route.seen == [f"{center.accounts_url}/oauth/v2/token", f"{center.api_domain}/crm/v8/org"]
    assert emulator.backend.stats["requests"]["org"] == 1


def test_token_from_another_data_center_is_explained(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, token_store
) -> None:
    emulator.backend.config.advertised_api_domain = "https://www.zohoapis.eu"
    monkeypatch.setenv("AIRFLOW_CONN_ZOHOCRM_DEFAULT", zoho_connection(emulator, "us"))
    hook = ZohoCRMHook(token_store=token_store, adapter=RouteToEmulator(emulator.url))
    with pytest.raises(ZohoConfigError, match="set data_center to 'eu'"):
        hook.get_org()
    assert emulator.backend.stats["requests"]["org"] == 0  # no API call with a token for the wrong domain


def test_api_domain_not_zoho_is_never_sent_a_token(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, token_store
) -> None:
    emulator.backend.config.advertised_api_domain = "https://www.zohoapis.eu.attacker.example"
    monkeypatch.setenv("AIRFLOW_CONN_ZOHOCRM_DEFAULT", zoho_connection(emulator, "eu"))
    route = RouteToEmulator(emulator.url)
    with pytest.raises(ZohoConfigError, match="not a Zoho host"):
        ZohoCRMHook(token_store=token_store, adapter=route).get_org()
    assert route.seen == ["https://accounts.zoho.eu/oauth/v2/token"]


@pytest.mark.parametrize(
    "answer", ["emulator", "http://localhost:8080", "https://127.0.0.2", "http://[::1]:9"]
)
def test_loopback_api_domain_from_a_real_data_center_is_never_sent_a_token(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, token_store, answer: str
) -> None:
    """Issue 31: a connection on a real data center (Zoho's own accounts server) must not follow a token answer
    to a loopback api_domain: on a worker that is whatever listens on that port, not Zoho."""
    emulator.backend.config.advertised_api_domain = emulator.url if answer == "emulator" else answer
    monkeypatch.setenv("AIRFLOW_CONN_ZOHOCRM_DEFAULT", zoho_connection(emulator, "eu"))
    route = RouteToEmulator(emulator.url)
    with pytest.raises(ZohoConfigError, match="not a Zoho host"):
        ZohoCRMHook(token_store=token_store, adapter=route).get_org()
    assert route.seen == ["https://accounts.zoho.eu/oauth/v2/token"]
    assert emulator.backend.stats["requests"]["org"] == 0


def test_loopback_accounts_server_may_name_a_loopback_api_domain(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, token_store
) -> None:
    """The emulator flow without an api_domain override: the accounts server is on loopback (set by the
    connection editor), so the loopback api_domain its answer names is followed."""
    conn = emulator.connection()
    del conn["extra"]["api_domain"]
    monkeypatch.setenv("AIRFLOW_CONN_ZOHOCRM_DEFAULT", json.dumps(conn))
    assert ZohoCRMHook(token_store=token_store).get_org()
    assert emulator.backend.stats["requests"]["org"] == 1


@pytest.mark.parametrize(
    ("alias", "name"), [("EU", "eu"), ("zoho.eu", "eu"), ("com", "us"), ("com.au", "au"), (None, "us")]
)
def test_data_center_aliases(alias: str | None, name: str) -> None:
    assert get_data_center(alias).name == name


@pytest.mark.parametrize(
    "url",
    [
        "https://sandbox.zohoapis.com",
        "https://developer.zohoapis.eu",
        "http://127.0.0.1:8080",
        "http://localhost:9",
        "http://[::1]:8080",
    ],
)
def test_allowed_overrides(url: str) -> None:
    assert ensure_safe_url(url + "/", "api_domain") == url


@pytest.mark.parametrize(
    "url",
    [
        "http://www.zohoapis.com",  # plain http to a real host
        "https://zohoapis.com.evil.org",
        "https://evilzoho.com",
        "https://user:pw@www.zohoapis.com",
        "ftp://127.0.0.1",
        "http://192.168.1.10",
        "https://www.zohoapis.com/?x=1",
        "http://x.localhost:8080",  # resolved through DNS: a search domain can make it a Service
        "http://zohocrm-emulator.localhost",
        "http://localhost.:8080",
        "http://[::ffff:127.0.0.1]:8080",
    ],
)
def test_refused_overrides(url: str) -> None:
    with pytest.raises(ZohoConfigError):
        resolve_endpoints("us", accounts_url=url)
