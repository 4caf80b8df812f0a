"""Scripted faults and the ``/_emulator/*`` admin endpoints (read and steer the emulator from another process).

A fault action is either an *effect* (runs before the request is served, e.g. revoke every token, delete
records, or set a ``req.flags`` entry a handler reads) or a *reply* (answers instead of the real handler, e.g.
a 500 or an HTML maintenance page). Add one with ``@fault_effect("name")`` or ``@fault_reply("name")``; the
dispatcher in ``backend.py`` applies every due effect, then the first due reply.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .models import Fault, OrgState, Reply, Request, error
from .routing import fault_effect, fault_reply, fault_wrap, route
from .unblock import UNKNOWN_CODE_FLAG

if TYPE_CHECKING:
    from .backend import EmulatorBackend

TOO_MANY = error("TOO_MANY_REQUESTS", "You have exceeded the concurrency limit. Please try again later.")


class FaultService(OrgState):
    """The queue of scripted faults."""

    def add_fault(self, fault: Fault) -> Fault:
        """Script a failure (see :class:`~.models.Fault`)."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every pending fault."""
        with self._lock:
            self._faults.clear()

    def _due_faults(self, endpoint: str) -> list[Fault]:
        """Count this request against every matching fault; return the ones that fire on it."""
        due = []
        for f in self._faults:
            if f.endpoint in ("any", endpoint):
                f.seen += 1
                if f.first <= f.seen < f.first + f.times:
                    f.fired += 1
                    due.append(f)
        self._faults = [f for f in self._faults if not f.done]
        self._counters["faults_fired"] += len(due)
        return due


# --------------------------------------------------------------------------------------------- fault effects


@fault_effect("delay")
def _delay(backend: EmulatorBackend, req: Request, fault: Fault) -> None:
    """Sleep (outside the lock) before answering: a slow network or a slow Zoho."""
    time.sleep(fault.delay)


@fault_effect("revoke_access_tokens")
def _revoke_access_tokens(backend: EmulatorBackend, req: Request, fault: Fault) -> None:
    backend.revoke_access_tokens()


@fault_effect("revoke_refresh_token")
def _revoke_refresh_token(backend: EmulatorBackend, req: Request, fault: Fault) -> None:
    backend.revoke_refresh_token(backend.refresh_token_of(req))


@fault_effect("expire_page_tokens")
def _expire_page_tokens(backend: EmulatorBackend, req: Request, fault: Fault) -> None:
    backend.expire_page_tokens()


@fault_effect("delete_records")
def _delete_records(backend: EmulatorBackend, req: Request, fault: Fault) -> None:
    for rid in fault.ids:
        backend.delete_record(None, rid)


@fault_effect("add_records")
def _add_records(backend: EmulatorBackend, req: Request, fault: Fault) -> None:
    """Someone creates records (``fault.ids`` in ``fault.module``, each with an Email) just before this
    request: a scan in progress meets records that did not exist when it started."""
    for rid in fault.ids:
        backend.add_record(fault.module, rid, fields={"Email": f"new{rid}@example.com"})


@fault_effect(UNKNOWN_CODE_FLAG)
def _unknown_code(backend: EmulatorBackend, req: Request, fault: Fault) -> None:
    req.flags.add(UNKNOWN_CODE_FLAG)


# --------------------------------------------------------------------------------------------- fault replies


@fault_reply("500")
def _internal_error() -> Reply:
    return Reply.json(500, error("INTERNAL_ERROR", "Internal Server Error"))


def _gateway(status: int, title: str) -> Reply:
    return Reply.html(
        status, f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    )


@fault_reply("502")
def _bad_gateway() -> Reply:
    return _gateway(502, "502 Bad Gateway")


@fault_reply("503")
def _unavailable() -> Reply:
    return _gateway(503, "503 Service Temporarily Unavailable")


@fault_reply("429")
def _too_many() -> Reply:
    return Reply.json(429, TOO_MANY)


@fault_reply("reset")
def _reset() -> Reply:
    return Reply(0, reset=True)


@fault_reply("html200")
def _html200() -> Reply:
    return Reply.html(200, "<html><body><h2>Zoho CRM is under maintenance</h2></body></html>")


@fault_reply("empty200")
def _empty200() -> Reply:
    return Reply(200, b"", {"Content-Type": "application/json;charset=UTF-8"})


@fault_reply("missing_data")
def _missing_data() -> Reply:
    return Reply.json(200, {"info": {}})


# --------------------------------------------------------------------------------------------- fault wraps


@fault_wrap("redirect_307")
def _redirect_307(backend: EmulatorBackend, req: Request, fault: Fault, serve: Callable[[], Reply]) -> Reply:
    """A 307 to ``fault.location`` (a client that follows it resends method, body and headers there)."""
    return Reply(307, b"", {"Location": fault.location})


@fault_wrap("redirect_308")
def _redirect_308(backend: EmulatorBackend, req: Request, fault: Fault, serve: Callable[[], Reply]) -> Reply:
    return Reply(308, b"", {"Location": fault.location})


@fault_wrap("reset_after")
def _reset_after(backend: EmulatorBackend, req: Request, fault: Fault, serve: Callable[[], Reply]) -> Reply:
    """The request is served for real (an unblock is applied), then the connection drops: the answer is lost."""
    serve()
    return Reply(0, reset=True)


@fault_wrap("500_after")
def _error_after(backend: EmulatorBackend, req: Request, fault: Fault, serve: Callable[[], Reply]) -> Reply:
    """Served for real, then a 500 instead of the answer (a gateway failing after Zoho acted)."""
    serve()
    return Reply.json(500, error("INTERNAL_ERROR", "Internal Server Error"))


#: How ``reworded`` rewrites Zoho's NOT_ALLOWED messages: the same meaning in other words, then one wording
#: no client knows. Zoho's texts are not a contract; a client must survive both.
REWORDED = {
    "Email is already unblocked": "EMAIL ALREADY UNBLOCKED.",
    "Cannot unblock, Email is blocked permanently": "Cannot unblock: email is permanently-blocked!",
    "Cannot unblock, email has been unblocked 5 times already": "Email was unblocked five times already",
}
UNKNOWN_WORDING = "This address cannot be released right now"


@fault_wrap("reworded")
def _reworded(backend: EmulatorBackend, req: Request, fault: Fault, serve: Callable[[], Reply]) -> Reply:
    """Served for real; NOT_ALLOWED messages in the answer reworded (see :data:`REWORDED`)."""
    return _rewrite_messages(serve(), lambda m: REWORDED.get(m, m))


@fault_wrap("unknown_wording")
def _unknown_wording(
    backend: EmulatorBackend, req: Request, fault: Fault, serve: Callable[[], Reply]
) -> Reply:
    """Served for real; every NOT_ALLOWED message replaced by a text no client has seen."""
    return _rewrite_messages(serve(), lambda m: UNKNOWN_WORDING)


def _rewrite_messages(reply: Reply, rewrite: Callable[[str], str]) -> Reply:
    payload = reply.payload
    if not isinstance(payload, dict):
        return reply
    data = payload.get("data")
    items = data if isinstance(data, list) else [payload]
    for item in items:
        if isinstance(item, dict) and item.get("code") == "NOT_ALLOWED":
            item["message"] = rewrite(str(item.get("message", "")))
    return Reply.json(reply.status, payload, {k: v for k, v in reply.headers.items() if k != "Content-Type"})


# --------------------------------------------------------------------------------------------- admin routes


def _payload(req: Request) -> Any:
    try:
        return json.loads(req.body) if req.body.strip() else {}
    except ValueError as exc:
        raise ValueError("body is not JSON") from exc


@route("admin_stats", "/_emulator/stats", service="admin")
def stats(backend: EmulatorBackend, req: Request) -> Reply:
    return Reply.json(200, backend.stats)


@route("admin_health", "/_emulator/health", service="admin")
def health(backend: EmulatorBackend, req: Request) -> Reply:
    return Reply.json(200, {"status": "ok"})


@route("admin_records", "/_emulator/records/{module}", service="admin")
def records(backend: EmulatorBackend, req: Request) -> Reply:
    return Reply.json(200, backend.records(req.params["module"]))


@route("admin_views", "/_emulator/views/{cvid}", service="admin")
def views(backend: EmulatorBackend, req: Request) -> Reply:
    return Reply.json(200, {"ids": backend.view_ids(req.params["cvid"])})


@route("admin_faults", "/_emulator/faults", "POST", service="admin")
def faults(backend: EmulatorBackend, req: Request) -> Reply:
    payload = _payload(req)
    items = payload if isinstance(payload, list) else [payload]
    for item in items:
        backend.add_fault(Fault(**item))
    return Reply.json(200, {"added": len(items)})


def _register_plain_action(name: str) -> None:
    """``POST /_emulator/<name>`` calls the backend method of that name, which takes no argument."""

    def handler(backend: EmulatorBackend, req: Request) -> Reply:
        getattr(backend, name)()
        return Reply.json(200, {"status": "ok"})

    route(f"admin_{name}", f"/_emulator/{name}", "POST", service="admin")(handler)


for _action in (
    "clear_faults",
    "reset_stats",
    "revoke_access_tokens",
    "expire_access_tokens",
    "expire_page_tokens",
):
    _register_plain_action(_action)


@route("admin_advance", "/_emulator/advance", "POST", service="admin")
def advance(backend: EmulatorBackend, req: Request) -> Reply:
    backend.advance(float(_payload(req).get("seconds", 0)))
    return Reply.json(200, {"now": backend.now()})
