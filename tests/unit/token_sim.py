"""A deterministic simulation of the token protocol (issue 20).

It drives the real :class:`TokenManager`, :class:`ZohoCRMClient`, :class:`AirflowVariableTokenStore` and
:class:`FileTokenStore` (real files, one tmp dir per machine) against fakes of what lies outside them: a virtual
clock, Airflow's Variable API (latency, failures, the per-process cache of ``[secrets] use_cache``), the machine
lock (``flock``, modelled so the scheduler knows who is blocked), Zoho's accounts server (latency, 5xx, 503,
throttling, refusals, read timeout after minting, answers slower than any timeout) and Zoho's API (401 for a
revoked token or a token of another org).

Each actor (a task) runs in a thread of its own, but only one runs at a time: an actor runs until its next
*point* (a Variable call, a file operation, a lock, a POST, an API call, a sleep) and hands control back. The
scheduler then picks who goes next, or moves the clock to the next wake-up. Every choice is an index into a
list of options; the list of indices is the schedule, and replaying it replays the run exactly.

The invariants (docs/ARCHITECTURE.md, "Worst case in grants, per refresh: what the simulation checks") are
checked at the step that could break them; ``test_the_simulation_catches_a_broken_protocol`` shows each one
failing on a broken protocol. The oracle is this module's own model (who minted what, what Zoho accepts, who claimed the lease based on
which read); it decodes the shared state but shares no logic with the code under test.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests

from airflow_provider_zohocrm.hooks.token_store import AirflowVariableTokenStore
from airflow_provider_zohocrm.zoho.auth import DeadlinePassed, FileTokenStore, OAuthCredentials, TokenManager
from airflow_provider_zohocrm.zoho.client import RetryPolicy, ZohoCRMClient
from airflow_provider_zohocrm.zoho.datacenters import resolve_endpoints
from airflow_provider_zohocrm.zoho.errors import ZohoAuthError


@contextlib.contextmanager
def quiet_provider_logs() -> Iterator[None]:
    """The runs' warnings are expected: silence them for a run, and give the level back (a test after this one
    that captures the provider's warnings must still see them)."""
    logger = logging.getLogger("airflow_provider_zohocrm")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


START = 1_700_000_000.0
LIFETIME = 3600.0  #: what the fake accounts server grants
MARGIN = 300.0  #: the managers' refresh margin (the jitter is off in the simulation)
FLOOR = 30.0  #: a token this close to expiry is no longer "usable"
FAILED_WINDOW = 60.0  #: after a failed or unanswered grant, nobody may POST again for this long
BLOCKED_WINDOW = 600.0  #: after a throttle or a refusal
FRESH_REJECTION = 60.0  #: a token the API rejects this soon after minting was "rejected right after granting"
TIMEOUT = (2.0, 5.0)  #: the managers' (connect, read) timeout
KEY_PREFIX = "zohocrm_token_cache_"
#: points after which an actor touches no shared state until its next point
QUIET = ("start", "sleep", "lease: is my read fresh?")
CREDS = OAuthCredentials("sim-client", "sim-secret", "sim-refresh")
#: grant behaviours; every one but "connect" and "503" may have been processed (and counted) by Zoho
BEHAVIOURS = (
    "ok",
    "500",
    "503",
    "nonjson",
    "redirect",
    "unknown",
    "timeout",
    "throttle",
    "refuse",
    "connect",
)


class Abort(BaseException):
    """Raised inside actor threads when the run is stopped."""


@dataclass
class Scenario:
    """What the world does; the scheduler decides the order."""

    name: str
    #: per actor (task): steps ("call",) an API call, ("wait", s) a pause, ("revoke",) Zoho revokes all tokens
    plans: list[list[tuple[Any, ...]]]
    machines: int = 2
    #: behaviour of the n-th POST (then "ok")
    grants: list[str] = field(default_factory=list)
    grant_latency: float = 0.3
    variable_latency: float = 0.02
    #: the Variable API fails in [start, end) (seconds from the start)
    variable_down: tuple[float, float] | None = None
    #: each Variable call fails with this probability (random runs)
    variable_fail_rate: float = 0.0
    #: ``[secrets] use_cache``: a process reuses a Variable it read for this long
    cache_ttl: float = 0.0
    #: seconds left on a token published (Variable and every machine's file) at the start; None: cold start
    initial_left: float | None = None
    #: the API rejects every token (``api_domain`` of another org)
    api_rejects: bool = False
    #: a grant this slow (seconds), when a POST's behaviour is "slow"
    slow_grant: float = 10_000.0
    #: random runs: draw each grant's latency from [0, 2 * grant_latency]
    jitter_latency: bool = False


@dataclass
class Claim:
    actor: int
    based_on: int  #: the Variable version the claimer last read before writing its claim
    version: int  #: the version its claim wrote
    owner: str
    stale: bool = False  #: based on a read served from the process's cache, not by the Variable API
    #: its lease was ended, while live, by another task's write whose read did not show it (no compare-and-set:
    #: a claimer whose claim interleaved with another's saves over a lease claimed after its read)
    ended_unseen: bool = False

    def interleaves(self, other: Claim | None) -> bool:
        """Both claimers read the Variable (from the API) before the other's claim landed: both may win. A claim
        never interleaves with itself (else every leased grant would excuse itself from I1, I3 and I5)."""
        return (
            other is not None
            and other is not self
            and not (self.stale or other.stale)
            and self.based_on < other.version
            and other.based_on < self.version
        )


@dataclass
class Post:
    actor: int
    machine: int
    start: float
    behaviour: str
    claim: Claim | None
    end: float | None = None
    token: str | None = None
    failed_window: float = 0.0
    unavailable: bool = False  #: the poster's lease was "unavailable" (Variable API errors)
    var_errors: int = 0  #: the poster's Variable errors so far (one after the POST: its record may be lost)
    record_lost: bool = False  #: its failure record was overwritten by a write based on an older read


@dataclass
class Minted:
    value: str
    minted_at: float
    expires: float
    post: Post
    revoked: bool = False


class Violation(AssertionError):
    pass


class Pruned(Exception):
    pass


def _footprint(label: str, machine: int) -> tuple[str, str] | None:
    """What the step after a point touches: (resource, "r" or "w"); None: everything (checks read all)."""
    if label == "file load":
        return f"file{machine}", "r"
    if label in ("file save", "file delete"):
        return f"file{machine}", "w"
    if label.startswith(("lock", "wait lock", "wait_unlocked")):
        return f"lock{machine}", "w"
    if label == "Variable.get":
        return "var", "r"
    if label == "Variable.set lands":
        return "var", "w"
    return None


def _independent(a: tuple[int, str], b: tuple[int, str], actors: list[Actor]) -> bool:
    if a[0] == b[0]:
        return False
    fa, fb = _footprint(a[1], actors[a[0]].machine), _footprint(b[1], actors[b[0]].machine)
    return fa is not None and fb is not None and (fa[0] != fb[0] or fa[1] == fb[1] == "r")


class Actor:
    def __init__(self, sim: Sim, idx: int, machine: int, plan: list[tuple[Any, ...]]) -> None:
        self.sim, self.idx, self.machine, self.plan = sim, idx, machine, plan
        self.sem = threading.Semaphore(0)
        self.wake_at = START
        self.blocked_on: tuple[str, str] | None = None
        self.done = False
        self.label = "start"
        self.cache: dict[str, tuple[str | None, int, float]] = {}
        self.last_read = -1  #: the Variable version this actor's last read saw
        self.last_read_stale = False  #: that read came from the process's cache (``use_cache``)
        self.last_value: str | None = None  #: what the Variable API answered to its last read
        self.var_errors = 0  #: Variable calls of this actor that failed
        self.claim: Claim | None = None
        self.lease_status: str | None = None
        self.deadline: float | None = None
        self.first_401: str | None = None
        self.outcomes: list[tuple[str, str]] = []
        self.tm: TokenManager | None = None
        self.store: SimStore | None = None
        self.client: Any = None


class Sim:
    """One run: a scenario, a chooser (schedule), and the invariants."""

    def __init__(
        self,
        scenario: Scenario,
        choose: Callable[[int], int],
        root: Path,
        *,
        max_pauses: int = 2,
        fault_seed: int = 0,
        max_steps: int = 20_000,
    ) -> None:
        self.sc, self.choose, self.root = scenario, choose, root
        self.now = START
        self.rng = random.Random(fault_seed)
        self.max_pauses, self.pauses, self.max_steps = max_pauses, 0, max_steps
        self.reduce = isinstance(choose, Replay)
        self.asleep: set[tuple[int, str]] = set()
        self.variables: dict[str, str] = {}
        self.version = 0
        self.owners: dict[str, Claim] = {}
        self.written_at: dict[str, int] = {}  #: token value -> the Variable version that first held it
        self.lease_at: dict[int, str] = {}  #: Variable version -> the owner of the lease it held
        self.locks: dict[str, tuple[str, set[int]]] = {}
        self.minted: dict[str, Minted] = {}
        self.posts: list[Post] = []
        self.post_count = 0
        self.fresh_rejections: list[tuple[float, int]] = []
        #: a recorded failure or rejection was overwritten by a write based on an older read (a race of two
        #: read-modify-writes the protocol cannot see without compare-and-set)
        self.record_lost = False
        self.trace: list[str] = []
        self.violations: list[str] = []
        self.aborted = False
        self.main = threading.Semaphore(0)
        self._by_thread: dict[int, Actor] = {}
        self.actors = [Actor(self, i, i % scenario.machines, plan) for i, plan in enumerate(scenario.plans)]
        self.key = CREDS.cache_key(resolve_endpoints("us").accounts_url)
        if scenario.initial_left is not None:
            self._publish_initial(scenario.initial_left)

    # -- scheduling ---------------------------------------------------------------------------------------

    def current(self) -> Actor:
        return self._by_thread[threading.get_ident()]

    def point(self, label: str, *, until: float | None = None, lock: tuple[str, str] | None = None) -> None:
        """Hand control back to the scheduler; return when it picks this actor again."""
        if self.aborted:
            raise Abort
        actor = self.current()
        actor.label, actor.blocked_on = label, lock
        actor.wake_at = self.now if until is None else until
        self.main.release()
        actor.sem.acquire()
        if self.aborted:
            raise Abort

    def sleep(self, seconds: float) -> None:
        self.point(f"sleep {seconds:g}", until=self.now + max(0.0, seconds))

    def _blocked(self, actor: Actor) -> bool:
        if actor.blocked_on is None:
            return False
        name, mode = actor.blocked_on
        held = self.locks.get(name)
        return held is not None and bool(held[1]) and (mode == "x" or held[0] == "x")

    def run(self) -> Sim:
        threads = [threading.Thread(target=self._body, args=(a,), daemon=True) for a in self.actors]
        for thread in threads:
            thread.start()
        for _ in threads:
            self.main.acquire()  # every actor is parked at its first point
        try:
            for _ in range(self.max_steps):
                live = [a for a in self.actors if not a.done]
                if not live:
                    break
                ready = [a for a in live if a.wake_at <= self.now and not self._blocked(a)]
                sleepers = [a for a in live if a.wake_at > self.now]
                # A step that touches no shared state (waking from a sleep, reading one's own clock) commutes with
                # every other: run it without branching (a partial-order reduction); a pause may still go first.
                quiet = [a for a in ready if a.label.startswith(QUIET)]
                options: list[Actor | None] = quiet[:1] or list(ready)
                if sleepers and (not ready or self.pauses < self.max_pauses):
                    options.append(None)  # move the clock to the next wake-up (a pause if someone is ready)
                if not options:
                    self.fail("deadlock: " + ", ".join(f"a{a.idx}@{a.label}" for a in live))
                pick = self._pick(options)
                if pick is None:
                    if ready:
                        self.pauses += 1
                    self.now = min(a.wake_at for a in sleepers)
                    self.trace.append(f"t+{self.now - START:.3f}")
                    continue
                self.trace.append(f"a{pick.idx}:{pick.label}")
                pick.sem.release()
                self.main.acquire()
                if self.violations:
                    raise Violation(self.violations[0])
            else:
                self.fail(f"no end after {self.max_steps} steps")
        finally:
            self.aborted = True
            for actor in self.actors:
                actor.sem.release()
            for thread in threads:
                thread.join(timeout=5)
        return self

    def _op(self, actor: Actor | None) -> tuple[int, str] | None:
        return None if actor is None else (actor.idx, actor.label)

    def _pick(self, options: list[Actor | None]) -> Actor | None:
        """The scheduler's choice. With ``reduce`` (exhaustive runs), sleep sets skip orders that only swap
        independent steps: a step already explored at an ancestor stays asleep until a dependent one runs."""
        if not self.reduce:
            return options[self.choose(len(options))] if len(options) > 1 else options[0]
        ops = [self._op(a) for a in options]
        allowed = [i for i, op in enumerate(ops) if op is None or op not in self.asleep]
        if not allowed:
            raise Pruned
        k = self.choose(len(allowed)) if len(allowed) > 1 else 0
        chosen = ops[allowed[k]]
        if chosen is None:
            self.asleep = set()
        else:
            before = {op for op in (ops[allowed[j]] for j in range(k)) if op is not None}
            self.asleep = {op for op in self.asleep | before if _independent(op, chosen, self.actors)}
        return options[allowed[k]]

    def fail(self, message: str) -> None:
        raise Violation(message)

    def _body(self, actor: Actor) -> None:
        self._by_thread[threading.get_ident()] = actor
        try:
            self.point("start")
            self._setup(actor)
            for step in actor.plan:
                if step[0] == "wait":
                    self.sleep(step[1])
                elif step[0] == "revoke":
                    self.point("revoke")
                    for minted in self.minted.values():
                        minted.revoked = True
                else:
                    self._call(actor)
        except Abort:
            pass
        except BaseException as exc:  # a bug of the harness, or an error outside a call
            self.violations.append(f"a{actor.idx} crashed: {type(exc).__name__}: {exc}")
        finally:
            actor.done = True
            self.main.release()

    def _setup(self, actor: Actor) -> None:
        directory = self.root / f"machine-{actor.machine}"
        files = SimFiles(directory, self, actor.machine)
        actor.store = SimStore(files, self)
        endpoints = resolve_endpoints("us")
        tm = TokenManager(
            CREDS,
            endpoints,
            FakeAccounts(self),  # type: ignore[arg-type]
            store=actor.store,
            timeout=TIMEOUT,
            margin_jitter=0.0,
            clock=lambda: self.now,
            sleep=self.sleep,
        )
        tm.run_within = self.run_within
        actor.tm = tm
        actor.client = ZohoCRMClient(
            tm, FakeApi(self), retry=RetryPolicy(max_attempts=3, backoff_base=0.0, backoff_max=0.0)
        )

    def run_within(self, seconds: float, call: Callable[[], Any]) -> Any:
        """The simulation's deadline: a POST that would end later is cut at it (DeadlinePassed)."""
        actor = self.current()
        actor.deadline = self.now + seconds
        try:
            return call()
        finally:
            actor.deadline = None

    def _call(self, actor: Actor) -> None:
        actor.first_401 = None
        try:
            actor.client.request("GET", "org")
        except Exception as exc:
            actor.outcomes.append(("error", f"{type(exc).__name__}: {exc}"))
            self.check_failure(actor, exc)
        else:
            actor.outcomes.append(("ok", ""))

    # -- the shared state, as the oracle sees it ----------------------------------------------------------

    def _publish_initial(self, left: float) -> None:
        post = Post(-1, -1, START - (LIFETIME - left), "ok", None, end=START - (LIFETIME - left))
        value = "tok-initial"
        self.minted[value] = Minted(value, post.start, START + left, post)
        post.token = value
        data = {
            "throttled_until": 0,
            "access_token": value,
            "api_domain": "https://www.zohoapis.com",
            "expires_at": START + left,
            "scope": "",
            "issued_at": post.start,
        }
        blob = CREDS.cipher().encrypt(json.dumps(data).encode()).decode()
        self.variables[KEY_PREFIX + self.key] = blob
        self.version += 1
        self.written_at[value] = self.version
        for machine in range(self.sc.machines):
            directory = self.root / f"machine-{machine}"
            FileTokenStore(directory).save(self.key, blob)

    def decode(self, blob: str | None) -> dict[str, Any]:
        if not blob:
            return {}
        if blob.startswith("{"):
            blob = json.loads(blob).get("state")
            if not blob:
                return {}
        try:
            data = json.loads(CREDS.cipher().decrypt(blob.encode()))
        except Exception:
            return {}
        return data if isinstance(data, dict) else {}

    def published(self, actor: Actor, *, variable: bool) -> list[tuple[str, float]]:
        """(token value, expires_at as written) in the places ``actor`` reads: its machine's file, the Variable."""
        blobs = [FileTokenStore(self.root / f"machine-{actor.machine}").load(self.key)]
        if variable:
            blobs.append(self.variables.get(KEY_PREFIX + self.key))
        found = []
        for blob in blobs:
            data = self.decode(blob)
            if data.get("access_token"):
                found.append((str(data["access_token"]), float(data["expires_at"])))
        return found

    def valid(self, value: str) -> bool:
        minted = self.minted.get(value)
        return (
            minted is not None
            and not minted.revoked
            and self.now < minted.expires
            and not self.sc.api_rejects
        )

    def variable_up(self) -> bool:
        down = self.sc.variable_down
        return not (down and down[0] <= self.now - START < down[1])

    # -- invariants ---------------------------------------------------------------------------------------

    def check_grant(self, actor: Actor, post: Post) -> None:
        """At every POST Zoho may count: I1 (one grant per refresh episode), I3 (back-off), I5 (rejections)."""
        unavailable = actor.lease_status == "unavailable"
        for value, expires_at in self.published(actor, variable=not unavailable):
            minted = self.minted.get(value)
            if minted and self.valid(value) and expires_at - self.now > MARGIN + 1:  # noqa: SIM102 - the condition, then its excuse
                if not self.excused(actor, minted.post):
                    self.violations.append(
                        f"I1: a{actor.idx} grants while a fresh token (from a{minted.post.actor}) is in a place it"
                        f" reads, without interleaved claims"
                    )
        for other in self.posts:
            if other.end is None and other.actor != actor.idx and other.behaviour not in ("503", "connect"):  # noqa: SIM102 - the condition, then its excuse
                if not self.excused(actor, other):
                    self.violations.append(
                        f"I1: a{actor.idx} grants while a{other.actor}'s grant is in flight, without interleaved"
                        " claims"
                    )
            if other.end is not None and other.failed_window and self.now < other.end + other.failed_window:  # noqa: SIM102 - the condition, then its excuse
                if not self.excused(actor, other):
                    self.violations.append(
                        f"I3: a{actor.idx} POSTs {self.now - other.end:.1f} s after a{other.actor}'s grant failed"
                        f" ({other.behaviour}); the window is {other.failed_window:g} s"
                    )
        if self.fresh_rejections:
            first, machine = self.fresh_rejections[0]
            # with Variable API errors the record may reach only the rejecting machine: one grant per machine
            shared = self.sc.variable_down is None and not self.sc.variable_fail_rate
            # I5 counts the tokens the rejection cost: grants that delivered one, or may still (in flight). A
            # grant that failed or went unanswered is I3's concern (nobody POSTs for its back-off window); the
            # protocol carries the first 401 over it, so the grant after the back-off is still the one replacement.
            counted = [
                p
                for p in self.posts
                if p.start > first
                and (p.token is not None or (p.end is None and p.behaviour in ("ok", "slow")))
                and (shared or p.machine == machine)
                and not self.excused(actor, p)  # two claims that truly interleave: both may grant (as in I1)
            ]
            if (not shared and actor.machine != machine) or self.record_lost:
                counted = []
            if self.now < first + BLOCKED_WINDOW and counted:
                self.violations.append(
                    f"I5: a{actor.idx} grants again although a token Zoho had just granted was rejected at"
                    f" t+{first - START:.1f} (already {len(counted)} token(s) granted since)"
                )

    def excused(self, actor: Actor, other: Post) -> bool:
        """Another grant in the same episode is allowed when the two claims truly interleaved, or when either
        side refreshed without the lease (Variable API errors) on another machine. Never a POST made under the
        very claim of ``other`` (the same task again in the same episode): a claim never excuses itself."""
        if actor.claim is not None and actor.claim is other.claim:
            return False
        if actor.claim is not None and actor.claim.interleaves(other.claim):
            return True
        # Two tasks whose claims interleaved both hold the lease, and either's save ends both: the other's grant
        # then runs under no lease anyone can see, so their later claims are not ordered either, and a third
        # task's claim is not ordered with the grant whose lease was ended.
        claims = list(self.owners.values())
        if any(
            {a.actor, b.actor} == {actor.idx, other.actor} and a.interleaves(b)
            for a in claims
            for b in claims
        ):
            return True
        if other.claim is not None and any(c.interleaves(other.claim) for c in claims):
            return True
        if other.claim is not None and other.claim.ended_unseen:
            return True  # its grant runs under no lease anyone can see: later claims are not ordered with it
        if other.failed_window and (
            other.record_lost or any(c.interleaves(other.claim) for c in self.owners.values())
        ):
            return True  # a failure record may be overwritten by the other claimer's read-modify-write
        lost_record = self.actors[other.actor].var_errors > other.var_errors if other.actor >= 0 else False
        without_lease = actor.lease_status == "unavailable" or other.unavailable or lost_record
        return without_lease and other.machine != actor.machine

    def check_failure(self, actor: Actor, exc: Exception) -> None:
        """I2: no task fails while a usable token is in a place it reads. I5: the error names the first 401."""
        # the Variable as this actor last read it (a save landing after that read is an ordinary race)
        places = [
            value
            for value, expires_at in self.published(actor, variable=False)
            if expires_at - self.now > FLOOR
        ]
        data = self.decode(actor.last_value)
        if data.get("access_token") and float(data["expires_at"]) - self.now > FLOOR:
            places.append(str(data["access_token"]))
        memory = getattr(actor.tm, "_memory", None)
        if memory is not None and memory.expires_at - self.now > FLOOR:
            places.append(memory.value)
        usable = [v for v in places if self.valid(v) and not self.sc.api_rejects]
        if usable:
            self.violations.append(
                f"I2: a{actor.idx} failed ({type(exc).__name__}: {str(exc)[:160]}) while a usable token is in a"
                " place it reads"
            )
        names_401 = "invalid oauth token (API at" in str(exc)
        if actor.first_401 and type(exc) is ZohoAuthError and exc.status == 401 and not names_401:
            self.violations.append(
                f"I5: a{actor.idx}'s error does not name the first 401 ({actor.first_401!r}):"
                f" {type(exc).__name__}: {str(exc)[:160]}"
            )

    def write(self, actor: Actor, name: str, value: str | None) -> None:
        """A Variable write lands. I4: a live lease is ended only by its holder, its expiry, or a write whose
        read preceded the claim (an interleaving the protocol cannot see)."""
        old = self.variables.get(name)
        old_lease = _lease_of(old)
        new_lease = _lease_of(value)
        self.version += 1
        old_token, new_token = self.decode(old).get("access_token"), self.decode(value).get("access_token")
        old_blocked, new_blocked = self.decode(old).get("blocked"), self.decode(value).get("blocked")
        if old_blocked and old_blocked != new_blocked and actor.last_read < self.version - 1:
            self.record_lost = True
        if old_blocked and not new_blocked and actor.last_read < self.version - 1:
            for (
                post
            ) in self.posts:  # a failure record lost to a write based on an older read (a race it cannot see)
                post.record_lost = post.record_lost or bool(post.failed_window and post.end)
        if new_lease:
            self.lease_at[self.version] = new_lease["owner"]
        if new_token and new_token not in self.written_at:
            self.written_at[new_token] = self.version
        if old_token and old_token != new_token and self.valid(old_token):
            old_expiry = float(self.decode(old)["expires_at"])
            based_on_older = actor.last_read < self.written_at.get(old_token, 0)
            excused = not actor.last_read_stale and self.excused(actor, self.minted[old_token].post)
            if (
                old_expiry - self.now > MARGIN + 1
                and (actor.last_read_stale or not based_on_older)
                and not excused
            ):
                self.violations.append(
                    f"I6: a{actor.idx}'s write replaced a fresh token Zoho still accepts (from a"
                    f"{self.minted[old_token].post.actor}) with a state based on"
                    + (" a cached (stale) read" if actor.last_read_stale else " a read that showed it")
                )
        known = self.owners.get(new_lease["owner"]) if new_lease else None
        is_claim = known is None or (
            known.actor == actor.idx and (old_lease or {}).get("owner") != new_lease["owner"]
        )
        if new_lease and is_claim:  # (a write that keeps another task's lease is not a claim)
            claim = Claim(actor.idx, actor.last_read, self.version, new_lease["owner"], actor.last_read_stale)
            self.owners[new_lease["owner"]] = claim
            actor.claim = claim
        if old_lease and float(old_lease["until"]) >= self.now:  # noqa: SIM102 - the condition, then its excuse
            if not new_lease or new_lease["owner"] != old_lease["owner"]:
                holder = self.owners.get(old_lease["owner"])
                showed = self.lease_at.get(actor.last_read) == old_lease["owner"]
                if holder is not None and holder.actor != actor.idx and showed:
                    self.violations.append(
                        f"I4: a{actor.idx} ended a{holder.actor}'s live lease with a write based on a read"
                        " that already showed it"
                    )
                elif holder is not None and holder.actor != actor.idx:
                    holder.ended_unseen = True
        if value is None:
            self.variables.pop(name, None)
        else:
            self.variables[name] = value


def _lease_of(value: str | None) -> dict[str, Any] | None:
    if not value or not value.startswith("{"):
        return None
    with contextlib.suppress(ValueError):
        lease = json.loads(value).get("lease")
        return lease if isinstance(lease, dict) else None
    return None


# -- fakes of what lies outside the code under test ---------------------------------------------------------


class FakeVariables:
    """Airflow's Variable API as one task process sees it (the process is the calling actor)."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    def _fails(self) -> bool:
        sim = self.sim
        fails = not sim.variable_up() or (
            sim.sc.variable_fail_rate > 0 and sim.rng.random() < sim.sc.variable_fail_rate
        )
        sim.current().var_errors += fails
        return fails

    def get(self, key: str, default: Any = None) -> Any:
        sim = self.sim
        actor = sim.current()
        sim.point("Variable.get")
        cached = actor.cache.get(key)
        actor.last_read_stale = False
        if cached is not None and sim.now - cached[2] < sim.sc.cache_ttl:
            actor.last_read, actor.last_read_stale = cached[1], True
            return default if cached[0] is None else cached[0]
        if self._fails():
            actor.last_read = sim.version  # it asked: a write "based on" this failed read must not be blind
            sim.sleep(sim.sc.variable_latency)
            raise RuntimeError("Variable API failed")
        value = sim.variables.get(key)
        actor.last_read, actor.last_value = sim.version, value
        if sim.sc.cache_ttl:
            actor.cache[key] = (value, sim.version, sim.now)
        sim.sleep(sim.sc.variable_latency)
        return default if value is None else value

    def set(self, key: str, value: str, description: str | None = None) -> None:
        self._write(key, value)

    def delete(self, key: str) -> None:
        self._write(key, None)

    def _write(self, key: str, value: str | None) -> None:
        sim = self.sim
        actor = sim.current()
        sim.sleep(sim.sc.variable_latency)
        sim.point("Variable.set lands")
        if self._fails():
            raise RuntimeError("Variable API failed")
        sim.write(actor, key, value)
        actor.cache.pop(key, None)  # a set invalidates the writer's own cache only

    def invalidate_cached(self, key: str) -> None:
        """Airflow's ``SecretCache.invalidate_variable`` for this process."""
        self.sim.current().cache.pop(key, None)


class SimFiles(FileTokenStore):
    """The real file store in this machine's tmp dir; its flock is modelled, so the scheduler sees waiters."""

    def __init__(self, directory: Path, sim: Sim, machine: int) -> None:
        super().__init__(directory)
        self.sim, self.machine = sim, machine

    def load(self, key: str) -> str | None:
        self.sim.point("file load")
        return super().load(key)

    def save(self, key: str, blob: str) -> None:
        self.sim.point("file save")
        super().save(key, blob)

    def delete(self, key: str) -> None:
        self.sim.point("file delete")
        super().delete(key)

    def _name(self, key: str) -> str:
        return f"m{self.machine}/{key}"

    def _take(self, name: str, mode: str, *, wait: bool) -> bool:
        sim = self.sim
        sim.point(f"lock {mode}")
        while True:
            held = sim.locks.get(name)
            if held is None or not held[1]:
                sim.locks[name] = (mode, {sim.current().idx})
                return True
            if mode == "s" and held[0] == "s":
                held[1].add(sim.current().idx)
                return True
            if not wait:
                return False
            sim.point(f"wait lock {mode}", lock=(name, mode))

    def _drop(self, name: str) -> None:
        self.sim.locks[name][1].discard(self.sim.current().idx)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        self._take(self._name(key), "x", wait=True)
        try:
            yield
        finally:
            self._drop(self._name(key))

    @contextlib.contextmanager
    def try_lock(self, key: str) -> Iterator[bool]:
        taken = self._take(self._name(key), "x", wait=False)
        try:
            yield taken
        finally:
            if taken:
                self._drop(self._name(key))

    def wait_unlocked(self, key: str) -> bool:
        name = self._name(key)
        self.sim.point("wait_unlocked")
        held = self.sim.locks.get(name)
        busy = held is not None and bool(held[1]) and held[0] == "x"
        if busy:
            self.sim.point("wait lock s", lock=(name, "s"))
        return busy


class SimStore(AirflowVariableTokenStore):
    """The hook's store as it runs inside a task, on the simulation's clock and Variable API."""

    def __init__(self, files: SimFiles, sim: Sim) -> None:
        super().__init__(files, clock=lambda: sim.now, monotonic=lambda: sim.now, sleep=sim.sleep)
        self.sim = sim
        self.fake = FakeVariables(sim)

    def _use_variables(self) -> bool:
        return True

    def _variable(self) -> Any:
        return self.fake

    def _uncache(self, name: str) -> None:
        self.fake.invalidate_cached(name)

    def _current(self, key: str) -> Any:
        self.sim.point("lease: is my read fresh?")  # the store decides on the clock here: a pause matters
        return super()._current(key)

    @contextlib.contextmanager
    def lease(self, key: str, **kwargs: Any) -> Iterator[Any]:
        actor = self.sim.current()
        actor.claim, actor.lease_status = None, None
        with super().lease(key, **kwargs) as status:
            actor.lease_status = status
            yield status


def _response(status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response.headers.update(headers or {"Content-Type": "application/json"})
    return response


class FakeAccounts:
    """Zoho's accounts server: the token POST (the manager's ``session``)."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        sim = self.sim
        actor = sim.current()
        sim.point("POST token")
        n = sim.post_count
        sim.post_count += 1
        behaviour = sim.sc.grants[n] if n < len(sim.sc.grants) else "ok"
        if behaviour == "connect":
            sim.sleep(TIMEOUT[0])
            raise requests.exceptions.ConnectTimeout("connect timeout")
        post = Post(actor.idx, actor.machine, sim.now, behaviour, actor.claim)
        post.unavailable, post.var_errors = actor.lease_status == "unavailable", actor.var_errors
        if behaviour != "503":
            sim.check_grant(actor, post)
        sim.posts.append(post)
        latency = sim.sc.grant_latency
        if sim.sc.jitter_latency:
            latency = sim.rng.uniform(0.0, 2 * sim.sc.grant_latency)
        if behaviour == "slow":
            latency = sim.sc.slow_grant
        if behaviour == "timeout":
            latency = TIMEOUT[1]
        if actor.deadline is not None and sim.now + latency > actor.deadline:
            sim.sleep(actor.deadline - sim.now)  # the manager stops waiting; Zoho may still mint
            post.end, post.failed_window = sim.now, FAILED_WINDOW
            raise DeadlinePassed
        sim.sleep(latency)
        post.end = sim.now
        if behaviour in ("ok", "slow"):
            value = f"tok-{n}"
            sim.minted[value] = Minted(value, post.start, post.start + LIFETIME, post)
            post.token = value
            body = {"access_token": value, "api_domain": "https://www.zohoapis.com", "expires_in": LIFETIME}
            return _response(200, body)
        post.failed_window = BLOCKED_WINDOW if behaviour in ("throttle", "refuse") else FAILED_WINDOW
        if behaviour == "timeout":
            value = f"tok-{n}-lost"
            sim.minted[value] = Minted(value, post.start, post.start + LIFETIME, post)
            raise requests.exceptions.ReadTimeout("read timeout")
        if behaviour == "503":
            post.failed_window = 0.0
            return _response(503, b"", {"Content-Type": "text/html"})
        if behaviour == "500":
            return _response(500, b"oops", {"Content-Type": "text/html"})
        if behaviour == "nonjson":
            return _response(200, b"<html>maintenance</html>", {"Content-Type": "text/html"})
        if behaviour == "redirect":
            return _response(302, b"", {"Location": "https://elsewhere.example/"})
        if behaviour == "unknown":
            return _response(200, {"error": "general_error"})
        if behaviour == "throttle":
            return _response(
                200,
                {
                    "error": "Access Denied",
                    "error_description": "You have made too many requests continuously.",
                },
            )
        return _response(200, {"error": "invalid_code"})


class FakeApi:
    """Zoho's CRM API (the client's ``session``): 200 for a token Zoho accepts, else 401 INVALID_TOKEN."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        sim = self.sim
        prepared = requests.Request(method, url, params=kwargs.get("params")).prepare()
        auth = kwargs.get("auth")
        if auth is not None:
            prepared = auth(prepared)
        actor = sim.current()
        sim.point("API call")
        value = str(prepared.headers.get("Authorization", "")).removeprefix("Zoho-oauthtoken ")
        if sim.valid(value) and not sim.sc.api_rejects:
            response = _response(200, {"org": [{"id": "1"}]})
        else:
            message = f"invalid oauth token (API at t+{sim.now - START:.3f})"
            minted = sim.minted.get(value)
            if minted is not None and sim.now - minted.minted_at < FRESH_REJECTION:
                sim.fresh_rejections.append((sim.now, actor.machine))
            if actor.first_401 is None:
                actor.first_401 = message
            response = _response(401, {"code": "INVALID_TOKEN", "message": message, "status": "error"})
        response.request = prepared
        response.url = url
        return response


# -- choosers: exhaustive (depth-first over every option) and seeded random -------------------------------


class Replay:
    """Follows ``prefix``, then always the first option; records how many options each step had."""

    def __init__(self, prefix: list[int]) -> None:
        self.prefix = prefix
        self.taken: list[int] = []
        self.widths: list[int] = []

    def __call__(self, width: int) -> int:
        i = len(self.taken)
        pick = self.prefix[i] if i < len(self.prefix) else 0
        if pick >= width:
            raise Violation(f"replay diverged at step {i}: option {pick} of {width}")
        self.taken.append(pick)
        self.widths.append(width)
        return pick


class Seeded:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.taken: list[int] = []

    def __call__(self, width: int) -> int:
        pick = self.rng.randrange(width)
        self.taken.append(pick)
        return pick


@dataclass
class Report:
    schedules: int
    failures: list[str]
    pruned: int = 0  #: runs cut short: they only reordered independent steps of a schedule already run


def explore(
    scenario: Scenario, root: Path, *, max_pauses: int = 1, limit: int = 100_000, first: bool = False
) -> Report:
    """Every schedule of ``scenario`` (within ``max_pauses`` pauses of a ready actor), depth first; ``first``:
    stop at the first failure (a mutant's test needs only one)."""
    prefix: list[int] = []
    count = pruned = 0
    failures: list[str] = []
    while count < limit:
        chooser = Replay(prefix)
        run_dir = root / f"x{count}"
        try:
            Sim(scenario, chooser, run_dir, max_pauses=max_pauses).run()
        except Violation as exc:
            failures.append(f"{scenario.name} schedule={chooser.taken}: {exc}")
        except Pruned:
            pruned += 1
        count += 1
        if first and failures:
            break
        # the next schedule: bump the deepest choice that has an untried option
        taken, widths = chooser.taken, chooser.widths
        while taken and taken[-1] + 1 >= widths[-1]:
            taken.pop()
            widths.pop()
        if not taken:
            break
        prefix = [*taken[:-1], taken[-1] + 1]
    return Report(count, failures, pruned)


def replay(scenario: Scenario, schedule: list[int], root: Path, *, max_pauses: int = 1) -> Sim:
    """Run one schedule again (a failure prints it); raises :class:`Violation` if it breaks an invariant."""
    return Sim(scenario, Replay(schedule), root, max_pauses=max_pauses).run()


def random_scenario(seed: int, *, rejections: bool = False) -> Scenario:
    """A scenario drawn from ``seed``: actors, machines, faults, latencies, what is cached at the start."""
    rng = random.Random(seed)
    actors = rng.randint(2, 5)
    machines = rng.randint(1, 3)
    plans = []
    for _ in range(actors):
        plan: list[tuple[Any, ...]] = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.3:
                plan.append(("wait", rng.choice([0.01, 1.0, 30.0, 200.0, 700.0])))
            plan.append(("call",))
        plans.append(plan)
    if rng.random() < 0.15:
        plans.append([("wait", rng.choice([0.05, 0.5, 100.0])), ("revoke",)])
    weights = {b: 1 for b in BEHAVIOURS} | {"ok": 12, "slow": 1}
    names = list(weights)
    grants = rng.choices(names, weights=[weights[n] for n in names], k=rng.randint(0, 4))
    down = None
    if rng.random() < 0.15:
        start = rng.choice([0.0, 0.03, 0.2])
        down = (start, start + rng.choice([0.05, 1.0, 1000.0]))
    return Scenario(
        name=f"random-{seed}",
        plans=plans,
        machines=machines,
        grants=grants,
        grant_latency=rng.choice([0.05, 0.3, 2.0]),
        variable_latency=rng.choice([0.005, 0.02, 0.2]),
        variable_down=down,
        variable_fail_rate=rng.choice([0.0, 0.0, 0.0, 0.05]),
        cache_ttl=rng.choice([0.0, 0.0, 0.0, 30.0]),
        initial_left=rng.choice([None, None, 3000.0, 200.0, 20.0]),
        api_rejects=rejections and rng.random() < 0.5,
        jitter_latency=True,
    )


def search(
    scenario: Scenario, root: Path, seeds: range, *, max_pauses: int = 2, first: bool = False
) -> Report:
    """Seeded random schedules of one scenario (the first failure's seed and schedule are in the report);
    ``first``: stop at the first failure."""
    failures = []
    count = 0
    for seed in seeds:
        chooser = Seeded(seed)
        count += 1
        try:
            Sim(scenario, chooser, root / f"s{seed}", max_pauses=max_pauses, fault_seed=seed).run()
        except Violation as exc:
            failures.append(f"{scenario.name} seed={seed} schedule={chooser.taken}: {exc}")
            if first:
                break
    return Report(count, failures)


def run_seed(seed: int, root: Path, *, rejections: bool = False) -> Sim:
    """One seeded random run (scenario and schedule from the seed); raises :class:`Violation`."""
    scenario = random_scenario(seed, rejections=rejections)
    return Sim(scenario, Seeded(seed), root, max_pauses=3, fault_seed=seed).run()


CALL: tuple[Any, ...] = ("call",)

#: The scenarios of issue 20's holes; each failed (some schedule broke an invariant) before its fix.
HOLES: dict[str, Scenario] = {
    # 1: a lease read gone stale (a pause > FRESH_READ_SECONDS) lets a claim ignore the token just saved
    "stale-lease-read": Scenario("stale-lease-read", plans=[[CALL], [CALL]], machines=2),
    # 2: an early refresh that fails with a 5xx/non-JSON/redirect/unknown error escapes get_token
    "early-refresh-500": Scenario("early-refresh-500", plans=[[CALL]], grants=["500"], initial_left=200.0),
    "early-refresh-nonjson": Scenario(
        "early-refresh-nonjson", plans=[[CALL]], grants=["nonjson"], initial_left=200.0
    ),
    # 2b: after an unanswered early refresh nothing is recorded: every later call POSTs again
    "early-refresh-unanswered": Scenario(
        "early-refresh-unanswered", plans=[[CALL, CALL]], grants=["timeout"], initial_left=200.0, machines=1
    ),
    # 3: a grant whose answer was lost is repeated at once by the other tasks
    "lost-answer": Scenario("lost-answer", plans=[[CALL], [CALL], [CALL]], grants=["timeout"], machines=2),
    # 4: a 401 on another machine rewrites the Variable under an early refresher's lease
    "invalidate-under-lease": Scenario(
        "invalidate-under-lease",
        plans=[[CALL], [("wait", 0.01), CALL], [("wait", 0.005), ("revoke",)]],
        machines=2,
        initial_left=200.0,
        grant_latency=1.0,
    ),
    # 5: a grant slower than the lease (requests' timeouts do not bound it): the lease expires under it
    "grant-outlives-lease": Scenario(
        "grant-outlives-lease", plans=[[CALL], [CALL]], grants=["slow"], machines=2
    ),
    # 6: the API rejects every token (another org's api_domain): one grant per task try
    "persistent-401": Scenario(
        "persistent-401", plans=[[CALL], [CALL], [CALL]], machines=2, api_rejects=True
    ),
    # 6b: tasks of one machine get the 401 at once; one replaces the token, another's invalidation then wiped the
    # replacement from the machine's file (the Variable API down: nothing else to read) and granted again
    "401-replaced-token": Scenario(
        "401-replaced-token",
        plans=[[CALL, CALL]] * 3,
        machines=1,
        api_rejects=True,
        variable_down=(0.0, 1000.0),
    ),
    # use_cache: a cached "free, no token" read overwrites the fresh token and grants again
    "use-cache": Scenario("use-cache", plans=[[CALL], [("wait", 1.0), CALL]], machines=2, cache_ttl=30.0),
    # Issue 30 (found once a claim no longer excused itself):
    # 7: the replacement of a token rejected at once fails (HTTP 200 without JSON); its failure record dropped
    # the first 401, so after the back-off the next token was "replaced once" again: two tokens, not one
    "401-replacement-fails": replace(random_scenario(210, rejections=True), name="401-replacement-fails"),
    # 8: a machine records a rejection at once but the Variable write fails (Variable API errors): another task
    # of that machine takes the rejected token from the Variable, copies it over the record, and the next lease
    # holder grants again
    "401-record-overwritten": replace(random_scenario(556, rejections=True), name="401-record-overwritten"),
}
