"""What a failed HTTP exchange tells a person: which failure it was (DNS, refused connection, TLS, connect or
read timeout, reset) and what to check, plus the rule that no request follows a redirect.

Shared by the API client and the token grant. Messages are built from our own words and the host name only:
never from the exception text (a URL with its query) nor from anything that could carry a secret.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

_CHECK_NETWORK = "check the network, any proxy (HTTPS_PROXY/NO_PROXY) and the connection's data_center"


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (requests → urllib3 → socket), outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        reason = getattr(current, "reason", None)  # MaxRetryError.reason
        # ProtocolError("Connection aborted.", ConnectionResetError(...)), ConnectionError(MaxRetryError(...))
        wrapped = next((arg for arg in current.args if isinstance(arg, BaseException)), None)
        current = (
            reason
            if isinstance(reason, BaseException)
            else wrapped or current.__cause__ or current.__context__
        )
    return chain


def describe_transport_error(exc: BaseException, host: str, timeout: float | tuple[float, float]) -> str:
    """One phrase naming the failure and what to check, e.g. ``"connection refused by 127.0.0.1:8080 (nothing
    listens there: check the api_domain/accounts_url overrides, …)"``. ``host`` is ``host[:port]``."""
    connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    chain = _causes(exc)

    def has(*kinds: type[BaseException]) -> bool:
        return any(isinstance(e, kinds) for e in chain)

    if has(requests.exceptions.ProxyError, urllib3.exceptions.ProxyError):
        return f"the proxy failed or refused the connection to {host} (check HTTPS_PROXY/NO_PROXY)"
    if has(urllib3.exceptions.NameResolutionError, socket.gaierror):
        return (
            f"DNS lookup failed for {host} (check the host name, DNS and proxy settings, and that the"
            " connection's data_center is one Zoho serves)"
        )
    if has(requests.exceptions.SSLError, ssl.SSLError, ssl.CertificateError):
        return (
            f"the TLS handshake with {host} failed (a proxy that intercepts https, an untrusted certificate"
            " — see REQUESTS_CA_BUNDLE — or http and https mixed up in a URL override)"
        )
    # urllib3's NewConnectionError (refused, unreachable) subclasses ConnectTimeoutError: refused goes first.
    if has(ConnectionRefusedError):
        return (
            f"connection refused by {host} (nothing listens there: {_CHECK_NETWORK}, and any"
            " api_domain/accounts_url override)"
        )
    if has(requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError):
        return f"connect timeout: no connection to {host} within {connect_timeout:g}s ({_CHECK_NETWORK})"
    if has(
        requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError, socket.timeout
    ):
        return (
            f"read timeout: {host} accepted the connection but sent no answer within {read_timeout:g}s (Zoho"
            " slow or a proxy holding the request; the connection's 'timeout' extra sets the limit)"
        )
    if has(ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected, ConnectionAbortedError):
        return (
            f"the connection was reset or closed by {host} before the answer (a proxy, load balancer or"
            f" Zoho dropped it; usually transient, else {_CHECK_NETWORK})"
        )
    if has(requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
        return f"the answer from {host} broke off or could not be decoded (usually transient)"
    if has(requests.exceptions.ConnectionError):
        return f"the connection to {host} failed ({type(chain[-1]).__name__}; {_CHECK_NETWORK})"
    return f"the request to {host} failed ({type(exc).__name__})"


def host_of(url: str) -> str:
    """``host[:port]`` of a URL, for messages (no path, no query)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def redirect_message(status: int, location: str | None, request_url: str, where: str) -> str:
    """Why a 3xx is an error, naming where it pointed (the host only: a Location's query may carry state)."""
    target = host_of(urljoin(request_url, location)) if location else "no Location"
    return (
        f"Zoho answered {where} with HTTP {status}, a redirect to {target}: refused, because following it would"
        " send the request and its credentials to another address. Check the connection's data_center and any"
        " api_domain/accounts_url override, and any proxy between Airflow and Zoho."
    )
