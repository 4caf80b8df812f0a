"""Zoho CRM emulator: a real HTTP server modelling Zoho's accounts server and CRM API, for tests and demos.

Standard library only, so users' DAG tests can run it without extra dependencies.
"""

from .backend import EmailState, EmulatorBackend, EmulatorConfig, Fault, Record, Reply
from .seed import (
    BOUNCE_STATUS_FIELD,
    BOUNCED_VIEW_ID,
    CONTACTS_BOUNCED_VIEW_ID,
    EMAIL_EXPECTED,
    EMAIL_KINDS,
    Seeded,
    SeedResult,
    expected_outcome,
    seed_demo_org,
    seed_email_org,
    seed_module,
)
from .server import ZohoCRMEmulator

__all__ = [
    "BOUNCED_VIEW_ID",
    "BOUNCE_STATUS_FIELD",
    "CONTACTS_BOUNCED_VIEW_ID",
    "EMAIL_EXPECTED",
    "EMAIL_KINDS",
    "EmailState",
    "EmulatorBackend",
    "EmulatorConfig",
    "Fault",
    "Record",
    "Reply",
    "SeedResult",
    "Seeded",
    "ZohoCRMEmulator",
    "expected_outcome",
    "seed_demo_org",
    "seed_email_org",
    "seed_module",
]
