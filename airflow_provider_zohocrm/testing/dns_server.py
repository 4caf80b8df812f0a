"""A tiny DNS server on 127.0.0.1 for tests of ``check_domain``: no query leaves the machine.

It answers UDP queries from a zone held in memory (``{"good.test.": {"MX": ["10 mx.good.test."]}}``; a name
not in the zone answers NXDOMAIN; a name without the asked type answers NOERROR with no records), counts every
question, and can be silent (it reads and never answers: a resolver timeout). Point the client at it with
``nameservers=["127.0.0.1"], port=server.port``.

Needs dnspython (a dependency of the provider), so, unlike the rest of the emulator, it is not imported by
``airflow_provider_zohocrm.testing``.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

Zone = Mapping[str, Mapping[str, Sequence[str]]]

#: Domains the emulator's seeds use, with a mail host each (``nxdomain.example.net``-style names are absent).
SEED_ZONE: dict[str, dict[str, list[str]]] = {
    "example.com.": {"MX": ["10 mx.example.com."]},
    "example.org.": {"MX": ["10 mx.example.org."]},
    "example.net.": {"MX": ["10 mx.example.net."]},
    "alt.example.com.": {"A": ["192.0.2.10"]},
}


class LocalDNSServer:
    """UDP DNS server on 127.0.0.1 (an ephemeral port) answering from ``zone``; a context manager."""

    def __init__(self, zone: Zone | None = None, *, answer: bool = True) -> None:
        self.zone = {
            name.lower() if name.endswith(".") else f"{name.lower()}.": dict(records)
            for name, records in (zone or SEED_ZONE).items()
        }
        self.answer = answer
        self.questions: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._stop = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="local-dns", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            if self._stop:
                return
            try:
                query = dns.message.from_wire(data)
                question = query.question[0]
            except (dns.exception.DNSException, IndexError):
                continue
            name = question.name.to_text().lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            with self._lock:
                self.questions[(name, rdtype)] += 1
            if not self.answer:
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            records = self.zone.get(name)
            if records is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif records.get(rdtype):
                response.answer.append(dns.rrset.from_text(name, 300, "IN", rdtype, *records[rdtype]))
            self.sock.sendto(response.to_wire(), peer)

    def count(self) -> int:
        """Questions received so far."""
        with self._lock:
            return sum(self.questions.values())

    def close(self) -> None:
        """Stop serving (wakes the blocked read with an empty datagram) and close the socket."""
        if self._stop:
            return
        self._stop = True
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
            waker.sendto(b"", ("127.0.0.1", self.port))
        self._thread.join(timeout=5)
        self.sock.close()

    def __enter__(self) -> LocalDNSServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
