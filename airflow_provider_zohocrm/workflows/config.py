"""The job's per-run choices: their defaults, their rules and their trigger-form schemas, in one object.

:class:`UnblockJobConfig` is what a DAG author passes to :class:`~.group.ZohoUnblockTaskGroup` or
:func:`~.group.unblock_bounced_emails_dag`: the defaults of the DAG params a run may override. Its values are
checked here with the same rules the first task applies to a run's values (``zoho/params.py`` through
``zoho/sources.py``): there is one set of rules. No Airflow import (the ``Param`` objects are built by the group).

Who may set what (the trust boundary, docs/security.md): a DAG author chooses everything here and the
construction arguments (connection, resolver, pool, approval); a user who may only trigger the DAG may override
these per-run params, each used as literal data (never rendered as a template), and nothing else.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.params import VERIFY_MODES
from airflow_provider_zohocrm.zoho.sources import SHORTHAND_KIND_PARAMS, sources_from_params

UNBLOCK_FIELDS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "enum": ["Email", "Secondary_Email"]},
    "minItems": 1,
    "uniqueItems": True,
}
VERIFY_ENUM = list(VERIFY_MODES)
#: One source of the ``sources`` param (checked again, with better messages, by the first task).
SOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "module": {"type": "string"},
        "view": {"type": ["string", "integer"]},
        "cvid": {"type": ["string", "integer"]},
        "coql_query": {"type": "string"},
        "all": {"type": "boolean"},
        "date_field": {"type": "string"},
        "since": {"type": "string"},
        "days": {"type": "number", "exclusiveMinimum": 0},
        "unblock_fields": UNBLOCK_FIELDS_SCHEMA,
        "verify": {"type": "string", "enum": VERIFY_ENUM},
        "min_hours_since_bounce": {"type": "number", "minimum": 0},
        "max_email_checks": {"type": ["integer", "null"], "minimum": 1},
        "check_domain": {"type": "boolean"},
    },
}


#: Who may set a param, at the end of its description (docs/security.md, "What a trigger-only user may choose").
TRIGGER_MAY_SET = "A trigger-only user may set it (its value is data, never a template)."
RESET_ALLOWED = "A trigger-only user may set it: this DAG's author allowed it (allow_reset_coverage=True)."
RESET_REFUSED = (
    "A trigger-only user may not: this DAG refuses it from a run (its author did not build it with"
    " allow_reset_coverage=True)."
)


@dataclass(frozen=True)
class ParamSpec:
    """One DAG param: its default, JSON schema (``type``, ``enum``, …) and trigger-form description."""

    default: Any
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True)
class UnblockJobConfig:
    """The defaults of the job's per-run params (each one a DAG param a run may override).

    :param sources: sources, one module each, e.g. ``[{"module": "Leads", "all": True}]`` (docs/unblock-job.md).
    :param module: single-module shorthand: the module of ``view``/``cvid`` (default Leads).
    :param view: single-module shorthand: a custom view by name (or id).
    :param cvid: single-module shorthand: a custom view by id.
    :param coql_query: single-module shorthand: a COQL select of the candidates (its ``from`` is the module).
    :param verify: ``none``, ``emails`` or ``sweep``; None: ``emails`` for an ``all`` source, else ``none``.
    :param min_hours_since_bounce: verify=emails: defer bounces younger than this.
    :param max_email_checks: verify=emails: Emails-list reads per source per run (rolling coverage).
    :param unblock_fields: ``Email`` and/or ``Secondary_Email``.
    :param check_domain: verify=emails: look a domain/host-failure bounce's domain up in DNS first.
    :param needs_person_tag: tag the records a person must handle with this tag (literal text).
    :param batch_size: ids per Zoho call, 1 to 500.
    :param dry_run: report what would be sent; send nothing and store nothing.
    :param reset_coverage: start every rolling coverage over (a new cycle) in this run.
    :param require_approval: plan first, unblock only after a person approves (needs the approval tasks).
    """

    sources: Sequence[Mapping[str, Any]] = ()
    module: str | None = None
    view: str | int | None = None
    cvid: str | int | None = None
    coql_query: str | None = None
    verify: str | None = None
    min_hours_since_bounce: float = 0
    max_email_checks: int | None = None
    unblock_fields: Sequence[str] = ("Email",)
    check_domain: bool = False
    needs_person_tag: str | None = None
    batch_size: int = 500
    dry_run: bool = False
    reset_coverage: bool = False
    require_approval: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(dict(s) for s in self.sources))
        object.__setattr__(self, "unblock_fields", tuple(self.unblock_fields))
        check_run_params(self.params_dict(), require_sources=False)

    def params_dict(self) -> dict[str, Any]:
        """The per-run params' defaults, JSON-ready (lists, not tuples), by param name."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        data["sources"] = [copy.deepcopy(dict(s)) for s in self.sources]
        data["unblock_fields"] = list(self.unblock_fields)
        return data

    @property
    def names_sources(self) -> bool:
        """Whether the config itself names the candidates (a scheduled run without them would do nothing)."""
        return bool(self.sources) or any(getattr(self, k) not in (None, "") for k in SHORTHAND_KIND_PARAMS)

    def param_specs(
        self, *, approval: bool = True, allow_reset_coverage: bool = False
    ) -> dict[str, ParamSpec]:
        """Every per-run param: this config's value as the default, its schema and description. Without the
        approval tasks there is no ``require_approval`` param. Each description ends saying whether a user who
        may only trigger the DAG may set it (docs/security.md): every one but ``reset_coverage``, which only a
        DAG built with ``allow_reset_coverage=True`` takes from a run."""
        d = self.params_dict()
        specs = {
            "sources": ParamSpec(
                d["sources"],
                {"type": "array", "items": SOURCE_SCHEMA},
                'Sources, one module each, e.g. [{"module": "Leads", "all": true}, {"module": "Contacts",'
                ' "view": "Bounced contacts"}]. Leave empty to use the single-module params below.',
            ),
            "module": ParamSpec(
                d["module"],
                {"type": ["null", "string"]},
                "Single-module shorthand: module API name (default Leads; a COQL query names its own)",
            ),
            "view": ParamSpec(
                d["view"], {"type": ["null", "string", "integer"]}, "Custom view by name (or id)"
            ),
            "cvid": ParamSpec(d["cvid"], {"type": ["null", "string", "integer"]}, "Custom view by id"),
            "coql_query": ParamSpec(
                d["coql_query"],
                {"type": ["null", "string"]},
                "COQL select of the candidates, without limit/offset; its 'from' is the module",
            ),
            "verify": ParamSpec(
                d["verify"],
                {"type": ["null", "string"], "enum": [None, *VERIFY_ENUM]},
                "none (trust the source), emails (read each Emails list), sweep (let Zoho's answers"
                " classify); default none for view/cvid/coql_query, emails for an 'all' source",
            ),
            "min_hours_since_bounce": ParamSpec(
                d["min_hours_since_bounce"],
                {"type": "number", "minimum": 0},
                "verify=emails: defer bounces younger than this",
            ),
            "max_email_checks": ParamSpec(
                d["max_email_checks"],
                {"type": ["null", "integer"], "minimum": 1},
                "verify=emails: Emails-list reads per source",
            ),
            "unblock_fields": ParamSpec(
                d["unblock_fields"], dict(UNBLOCK_FIELDS_SCHEMA), "Email and/or Secondary_Email"
            ),
            "check_domain": ParamSpec(
                d["check_domain"],
                {"type": "boolean"},
                "verify=emails: look up the domain of a domain/host-failure soft bounce in DNS first;"
                " a domain with no mail host is deferred (the resolver is the deployment's, not the run's)",
            ),
            "needs_person_tag": ParamSpec(
                d["needs_person_tag"],
                {"type": ["null", "string"]},
                "Tag the records a person must handle (permanently_blocked, limit_reached) in Zoho; the text"
                " is written as given",
            ),
            "batch_size": ParamSpec(
                d["batch_size"], {"type": "integer", "minimum": 1, "maximum": 500}, "Ids per Zoho call"
            ),
            "dry_run": ParamSpec(
                d["dry_run"], {"type": "boolean"}, "Report what would be sent; send nothing, store nothing"
            ),
            "reset_coverage": ParamSpec(
                d["reset_coverage"],
                {"type": "boolean"},
                "Start the rolling coverage of every source with max_email_checks over (a new cycle"
                " from the lowest id, nothing deferred); see docs/large-orgs.md. "
                + (RESET_ALLOWED if allow_reset_coverage else RESET_REFUSED),
            ),
        }
        if approval:
            specs["require_approval"] = ParamSpec(
                d["require_approval"],
                {"type": "boolean"},
                "Plan first (a dry run), show the plan in the approve_plan task, and unblock only after"
                " a person approves it in the UI; a rejection ends the run with the plan as its report",
            )
        return {
            name: spec
            if name == "reset_coverage"
            else ParamSpec(spec.default, spec.schema, f"{spec.description.rstrip('.')}. {TRIGGER_MAY_SET}")
            for name, spec in specs.items()
        }

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def check_run_params(params: Mapping[str, Any], *, require_sources: bool = True) -> None:
    """A run's (or a config's) per-run values checked with ``zoho/sources.py``'s rules, no call. A config need not
    name its sources (a trigger may give them): its other values are then checked against a stand-in source."""
    values = dict(params)
    values.pop("reset_coverage", None)
    values.pop("require_approval", None)
    for flag in ("reset_coverage", "require_approval"):
        if not isinstance(params.get(flag, False), bool):
            raise ZohoValidationError(f"{flag} must be true or false, not {params.get(flag)!r}.")
    named = bool(values.get("sources")) or any(values.get(k) not in (None, "") for k in SHORTHAND_KIND_PARAMS)
    if not named and not require_sources:
        values["sources"] = [{"all": True}]
    sources_from_params(values)


__all__ = [
    "RESET_ALLOWED",
    "RESET_REFUSED",
    "SOURCE_SCHEMA",
    "TRIGGER_MAY_SET",
    "UNBLOCK_FIELDS_SCHEMA",
    "ParamSpec",
    "UnblockJobConfig",
    "check_run_params",
]
