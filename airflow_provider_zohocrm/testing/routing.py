"""The emulator's route table and fault-action registry: a service module plugs in with one decorator line.

A route is a path template (``/crm/{ver}/{module}/actions/unblock_email``), the methods it answers, the
service it belongs to and a handler ``(backend, request) -> Reply``::

    @route("users", "/crm/{ver}/users")
    def users(backend: EmulatorBackend, req: Request) -> Reply: ...

The route's name is its key in ``stats["requests"]`` / ``stats["status_counts"]`` and the ``endpoint`` a
:class:`~.models.Fault` targets. What the dispatcher (``backend.EmulatorBackend.handle``) does per service:

- ``accounts``: counted, faults apply; no Authorization header (the OAuth server).
- ``crm``: counted, faults apply, concurrency limit + latency, ``Authorization: Zoho-oauthtoken`` checked
  (``req.token``), a method outside ``methods`` answers INVALID_REQUEST_METHOD, credits header.
- ``admin``: ``/_emulator/*``, neither counted nor faulted; a method outside ``methods`` is a 404.

Templates are tried most specific first (more literal segments first, then registration order), so
``/crm/{ver}/users`` wins over ``/crm/{ver}/{module}`` whatever the import order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from .models import FAULT_ACTIONS as FAULT_ACTIONS  # re-exported: registered here, checked by Fault
from .models import FAULT_ENDPOINTS, SUPPORTED_VERSIONS, Reply, Request

if TYPE_CHECKING:
    from .backend import EmulatorBackend
    from .models import Fault

Service = Literal["accounts", "crm", "admin"]
Handler = Callable[["EmulatorBackend", Request], Reply]
H = TypeVar("H", bound=Handler)
#: Names a fault may target besides the routes: ``any`` request, or one that matched no route.
OTHER = "other"
FAULT_ENDPOINTS.add(OTHER)


@dataclass(frozen=True)
class Route:
    """One entry of the route table."""

    name: str
    template: str
    methods: frozenset[str]
    service: Service
    handler: Handler
    versions: frozenset[str]
    pattern: re.Pattern[str]
    literals: int
    seq: int

    def allows(self, method: str) -> bool:
        """Whether the route answers this method (``"*"``: any)."""
        return "*" in self.methods or method in self.methods


ROUTES: list[Route] = []
_SEGMENT = re.compile(r"\{(\w+)\}")


def _compile(template: str) -> tuple[re.Pattern[str], int]:
    parts = template.strip("/").split("/")
    literals = sum(1 for p in parts if not _SEGMENT.fullmatch(p))
    rx = "/".join(f"(?P<{m.group(1)}>[^/]+)" if (m := _SEGMENT.fullmatch(p)) else re.escape(p) for p in parts)
    return re.compile(f"^/{rx}/?$"), literals


def route(
    name: str,
    template: str,
    methods: str | Iterable[str] = "GET",
    *,
    service: Service = "crm",
    versions: Iterable[str] = SUPPORTED_VERSIONS,
) -> Callable[[H], H]:
    """Register a handler for ``template`` (``{ver}`` must be one of ``versions``, else no route matches)."""
    allowed = frozenset({methods} if isinstance(methods, str) else methods)

    def register(handler: H) -> H:
        pattern, literals = _compile(template)
        ROUTES.append(
            Route(
                name, template, allowed, service, handler, frozenset(versions), pattern, literals, len(ROUTES)
            )
        )
        ROUTES.sort(key=lambda r: (-r.literals, r.seq))
        if service != "admin":
            FAULT_ENDPOINTS.add(name)
        return handler

    return register


def match(path: str) -> tuple[Route, dict[str, str]] | None:
    """The most specific route for a path and its template values; None when nothing matches."""
    for r in ROUTES:
        m = r.pattern.match(path)
        if m is None:
            continue
        params = m.groupdict()
        ver = params.get("ver")
        if ver is not None and ver not in r.versions:
            # a version this route does not exist in: Zoho answers INVALID_URL_PATTERN, not another route
            return None
        return r, params
    return None


def endpoint_names() -> tuple[str, ...]:
    """Every counted endpoint (route names of the accounts and CRM services, registration order, + other)."""
    names = [r.name for r in sorted(ROUTES, key=lambda r: r.seq) if r.service != "admin"]
    return (*dict.fromkeys(names), OTHER)


def fault_endpoints() -> frozenset[str]:
    """What :class:`~.models.Fault` may target."""
    return frozenset(FAULT_ENDPOINTS)


# --------------------------------------------------------------------------------------------- fault actions

#: Non-terminal actions: a side effect before the request is served (``effect(backend, request, fault)``).
FaultEffect = Callable[["EmulatorBackend", Request, "Fault"], None]
#: Terminal actions: the reply that replaces the real answer.
FaultReply = Callable[[], Reply]
#: Wrapping actions: get the request and a ``serve()`` that runs the real handler, and return the reply; they
#: may answer without serving (a redirect) or serve and then lose or replace the answer (``reset_after``).
FaultWrap = Callable[["EmulatorBackend", Request, "Fault", Callable[[], Reply]], Reply]
FAULT_EFFECTS: dict[str, FaultEffect] = {}
FAULT_REPLIES: dict[str, FaultReply] = {}
FAULT_WRAPS: dict[str, FaultWrap] = {}


def fault_effect(action: str) -> Callable[[FaultEffect], FaultEffect]:
    """Register a non-terminal fault action (it may set ``req.flags`` for a handler to read)."""

    def register(fn: FaultEffect) -> FaultEffect:
        FAULT_EFFECTS[action] = fn
        FAULT_ACTIONS.add(action)
        return fn

    return register


def fault_reply(action: str) -> Callable[[FaultReply], FaultReply]:
    """Register a terminal fault action (the first due one answers instead of the handler)."""

    def register(fn: FaultReply) -> FaultReply:
        FAULT_REPLIES[action] = fn
        FAULT_ACTIONS.add(action)
        return fn

    return register


def fault_wrap(action: str) -> Callable[[FaultWrap], FaultWrap]:
    """Register a wrapping fault action: it decides whether the real handler runs (``serve()``) and what the
    client gets back. Used when the state change must happen but the answer be lost."""

    def register(fn: FaultWrap) -> FaultWrap:
        FAULT_WRAPS[action] = fn
        FAULT_ACTIONS.add(action)
        return fn

    return register
