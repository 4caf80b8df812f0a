"""Zoho data centers and the rule for where a token may be sent.

Hard-coding ``.com`` is the most reported bug of Zoho connectors: every EU/IN/AU org then gets INVALID_TOKEN.
Every URL the client talks to comes from here, and every URL is checked before a secret is sent to it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from airflow_provider_zohocrm.zoho.errors import ZohoConfigError


@dataclass(frozen=True)
class DataCenter:
    """The hosts of one Zoho data center."""

    name: str
    accounts_url: str
    api_domain: str
    web_url: str

    @property
    def zoho_suffixes(self) -> tuple[str, ...]:
        """Host suffixes that belong to this data center (API, sandbox and developer hosts)."""
        api_host = urlsplit(self.api_domain).hostname or ""
        base = api_host.removeprefix("www.")
        return (base,)


DATA_CENTERS: dict[str, DataCenter] = {
    dc.name: dc
    for dc in (
        DataCenter("us", "https://accounts.zoho.com", "https://www.zohoapis.com", "https://crm.zoho.com"),
        DataCenter("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu", "https://crm.zoho.eu"),
        DataCenter("in", "https://accounts.zoho.in", "https://www.zohoapis.in", "https://crm.zoho.in"),
        DataCenter(
            "au", "https://accounts.zoho.com.au", "https://www.zohoapis.com.au", "https://crm.zoho.com.au"
        ),
        DataCenter("jp", "https://accounts.zoho.jp", "https://www.zohoapis.jp", "https://crm.zoho.jp"),
        DataCenter(
            "cn", "https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn", "https://crm.zoho.com.cn"
        ),
        DataCenter(
            "ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca", "https://crm.zohocloud.ca"
        ),
        DataCenter("sa", "https://accounts.zoho.sa", "https://www.zohoapis.sa", "https://crm.zoho.sa"),
        DataCenter("uk", "https://accounts.zoho.uk", "https://www.zohoapis.uk", "https://crm.zoho.uk"),
    )
}

DEFAULT_DATA_CENTER = "us"
API_VERSIONS = ("v2", "v2.1", "v3", "v4", "v5", "v6", "v7", "v8")
DEFAULT_API_VERSION = "v8"

# Every host Zoho serves accounts or APIs from ends in one of these registrable domains.
_ZOHO_DOMAINS = (
    "zoho.com",
    "zoho.eu",
    "zoho.in",
    "zoho.com.au",
    "zoho.jp",
    "zoho.com.cn",
    "zohocloud.ca",
    "zoho.sa",
    "zoho.uk",
    "zohoapis.com",
    "zohoapis.eu",
    "zohoapis.in",
    "zohoapis.com.au",
    "zohoapis.jp",
    "zohoapis.com.cn",
    "zohoapis.ca",
    "zohoapis.sa",
    "zohoapis.uk",
)


def get_data_center(name: str | None) -> DataCenter:
    """Return the data center called ``name`` (case-insensitive; ``None`` means the default, ``us``)."""
    key = (name or DEFAULT_DATA_CENTER).strip().lower()
    # Accept the domain form users copy from their browser, e.g. "com.au" or "zoho.eu".
    aliases = {"com": "us", "com.au": "au", "com.cn": "cn", "zohocloud.ca": "ca"}
    key = aliases.get(key.removeprefix("zoho."), key.removeprefix("zoho."))
    try:
        return DATA_CENTERS[key]
    except KeyError:
        raise ZohoConfigError(
            f"Unknown Zoho data center {name!r}: use one of {', '.join(DATA_CENTERS)}"
            " (the domain of your Zoho CRM login page: crm.zoho.eu is 'eu')."
        ) from None


def is_loopback_host(host: str) -> bool:
    """True for the hosts where plain HTTP and a local emulator are allowed: the literal name ``localhost``, an
    IPv4 address in 127.0.0.0/8 and the IPv6 address ``::1``.

    ``*.localhost`` is not: such a name is resolved through DNS, and a resolver search domain (Kubernetes adds
    several) can turn ``x.localhost`` into a Service on the network, which would then get tokens over plain http.
    """
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in _IPV4_LOOPBACK
    return address == _IPV6_LOOPBACK


_IPV4_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_IPV6_LOOPBACK = ipaddress.IPv6Address("::1")


def is_zoho_host(host: str) -> bool:
    """True when ``host`` belongs to one of Zoho's own domains."""
    host = host.lower().rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in _ZOHO_DOMAINS)


#: A DNS host name (what urlsplit and urllib3 agree on); anything else in the host part (``\\``, ``;``, ``%``,
#: whitespace) lets parsers disagree on where the host ends, e.g. ``https://evil.com\\.zohoapis.com`` looks like a
#: Zoho host to urlsplit while requests connects to ``evil.com``.
_HOSTNAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.?")


#: What the authority part of an accepted URL may be: a host (or a bracketed IPv6 address) and a numeric port.
_NETLOC_RE = re.compile(r"(?:\[[0-9a-f:.]+\]|[^\[\]:@]+)(?::[0-9]{1,5})?")


def _plain_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return _HOSTNAME_RE.fullmatch(host) is not None
    return True


def ensure_safe_url(url: str, purpose: str) -> str:
    """Return ``url`` without a trailing slash, or raise when a credential must not be sent there.

    A token goes only to a Zoho host over https, or to a loopback host (the emulator, a local proxy).
    """
    if any(c == "\\" or c.isspace() or not c.isprintable() for c in url.strip()):
        raise ZohoConfigError(f"The {purpose} {url!r} contains a backslash, whitespace or control character.")
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host or not _plain_host(host):
        raise ZohoConfigError(f"The {purpose} {url!r} is not an http(s) URL with a host.")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ZohoConfigError(f"The {purpose} {url!r} must not carry credentials, a query or a fragment.")
    if not _NETLOC_RE.fullmatch(parts.netloc.lower()):  # urlsplit reads "[::1]https:" as host ::1, no port
        raise ZohoConfigError(
            f"The {purpose} {url!r} is not an http(s) URL with a host and an optional port."
        )
    if is_loopback_host(host):
        return url.strip().rstrip("/")
    if parts.scheme != "https":
        raise ZohoConfigError(
            f"The {purpose} {url!r} uses plain http: only loopback hosts may; Zoho requires https."
        )
    if not is_zoho_host(host):
        raise ZohoConfigError(
            f"The {purpose} {url!r} is not a Zoho host: refusing to send Zoho credentials to it."
        )
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class Endpoints:
    """Where a connection's token grant and API calls go."""

    data_center: DataCenter
    accounts_url: str
    api_domain_override: str | None

    @property
    def token_url(self) -> str:
        return f"{self.accounts_url}/oauth/v2/token"

    @property
    def revoke_url(self) -> str:
        return f"{self.accounts_url}/oauth/v2/token/revoke"

    @property
    def accounts_on_loopback(self) -> bool:
        """True when the connection sends its grants to a loopback accounts server (the emulator, a proxy)."""
        return is_loopback_host(urlsplit(self.accounts_url).hostname or "")


def resolve_endpoints(
    data_center: str | None = None, accounts_url: str | None = None, api_domain: str | None = None
) -> Endpoints:
    """Resolve the accounts server and optional API domain override for a connection."""
    dc = get_data_center(data_center)
    accounts = ensure_safe_url(accounts_url, "accounts_url") if accounts_url else dc.accounts_url
    override = ensure_safe_url(api_domain, "api_domain") if api_domain else None
    return Endpoints(data_center=dc, accounts_url=accounts, api_domain_override=override)


def check_token_api_domain(api_domain: str, endpoints: Endpoints) -> str:
    """Check the ``api_domain`` a token response names against the connection's data center.

    A loopback ``api_domain`` is followed only when the connection's own accounts server is on loopback (the
    emulator, a local proxy: the connection editor chose it). An answer from a real accounts server that names
    a loopback host is refused before any call: the token would go to whatever listens on that port of the
    worker, not to Zoho. A host of another data center means the refresh token was issued there: the API would
    answer INVALID_TOKEN for every call, so say what to fix instead.
    """
    dc = endpoints.data_center
    safe = ensure_safe_url(api_domain, "api_domain returned by Zoho")
    host = urlsplit(safe).hostname or ""
    if is_loopback_host(host):
        if endpoints.accounts_on_loopback:
            return safe
        raise ZohoConfigError(
            f"Zoho's accounts server {endpoints.accounts_url} returned api_domain {safe!r}, a loopback host,"
            " not a Zoho host: refusing to send the token to it."
        )
    expected = dc.zoho_suffixes
    if not any(host == s or host.endswith("." + s) for s in expected):
        other = next(
            (
                d.name
                for d in DATA_CENTERS.values()
                if any(host == s or host.endswith("." + s) for s in d.zoho_suffixes)
            ),
            None,
        )
        raise ZohoConfigError(
            f"The refresh token belongs to {'the ' + repr(other) if other else 'another'} data center, not to"
            f" {dc.name!r}, the connection's data_center (Zoho's token answer names api_domain {safe!r}).",
            fix=f"In the connection's extra, set data_center to {other!r}."
            if other
            else "Set the connection's data_center to the domain of your Zoho CRM login page.",
        )
    return safe
