"""Apache Airflow provider for Zoho CRM.

The public API is :data:`__all__`: the hook, the operator, the unblock workflow (config, TaskGroup, DAG factory)
and the emulator. Everything else is internal and may change in any release (docs/your-own-dag.md, "Stability").
The names load on first use, so importing the package stays cheap (no Airflow import: the provider discovery
reads :func:`get_provider_info` from here).
"""

from __future__ import annotations

import importlib
from typing import Any

#: The one source of the version: pyproject.toml reads it (``[tool.setuptools.dynamic]``, parsed statically, so
#: keep it a plain string literal), the wheel's metadata and Airflow's provider info report it.
__version__ = "0.3.0.dev0"

DATA_CENTER_CHOICES = ["us", "eu", "in", "au", "jp", "cn", "ca", "sa", "uk"]
API_VERSION_CHOICES = ["v8", "v7", "v6"]


def _secret(label: str, description: str) -> dict[str, Any]:
    return {
        "label": label,
        "description": description,
        "schema": {"type": ["string", "null"], "format": "password"},
    }


def _text(
    label: str, description: str, default: str | None = None, enum: list[str] | None = None
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if default is not None:
        schema["default"] = default
    if enum is not None:
        schema["enum"] = enum
    return {"label": label, "description": description, "schema": schema}


#: The connection form's extra fields (Airflow >= 3.2 builds the form from this; the hook's form methods
#: serve 3.0/3.1 from the same definitions).
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "refresh_token": _secret(
        "Refresh token",
        "Offline refresh token from the Zoho API console (self-client or server-based client).",
    ),
    "data_center": _text(
        "Data center",
        "The data center of your Zoho account: the domain of your CRM login page (crm.zoho.eu is 'eu').",
        default="us",
        enum=DATA_CENTER_CHOICES,
    ),
    "api_version": _text("API version", "Zoho CRM API version.", default="v8", enum=API_VERSION_CHOICES),
    "accounts_url": _text(
        "Accounts URL override",
        "Only for sandbox/developer orgs or the emulator: the accounts server, e.g. http://127.0.0.1:8765.",
    ),
    "api_domain": _text(
        "API domain override",
        "Only for sandbox/developer orgs or the emulator: the API domain, e.g. https://sandbox.zohoapis.com.",
    ),
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["host", "schema", "port", "extra"],
    "relabeling": {"login": "Client ID", "password": "Client secret"},
    "placeholders": {
        "login": "1000.XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "password": "Client secret from api-console.zoho.com",
        "refresh_token": "1000.xxxxxxxx.xxxxxxxx",
        "data_center": "us",
        "api_version": "v8",
        "accounts_url": "leave empty for Zoho's own",
        "api_domain": "leave empty for Zoho's own",
    },
}


def get_provider_info() -> dict[str, Any]:
    """Airflow's provider discovery (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-zohocrm",
        "name": "Zoho CRM",
        "description": "Zoho CRM hook, Unblock Email operator and a Zoho CRM emulator for tests.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Zoho CRM",
                "external-doc-url": "https://www.zoho.com/crm/developer/docs/api/v8/",
                "tags": ["service"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "zohocrm",
                "hook-class-name": "airflow_provider_zohocrm.hooks.zohocrm.ZohoCRMHook",
                "hook-name": "Zoho CRM",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
        "hooks": [
            {"integration-name": "Zoho CRM", "python-modules": ["airflow_provider_zohocrm.hooks.zohocrm"]}
        ],
        "operators": [
            {
                "integration-name": "Zoho CRM",
                "python-modules": ["airflow_provider_zohocrm.operators.unblock_email"],
            }
        ],
        "extra-links": ["airflow_provider_zohocrm.operators.unblock_email.ZohoCRMModuleLink"],
    }


#: Public name → the module that defines it (imported on first use by :func:`__getattr__`).
_PUBLIC: dict[str, str] = {
    "ZohoCRMHook": "airflow_provider_zohocrm.hooks.zohocrm",
    "UnblockEmailOperator": "airflow_provider_zohocrm.operators.unblock_email",
    "UnblockJobConfig": "airflow_provider_zohocrm.workflows.config",
    "ZohoUnblockTaskGroup": "airflow_provider_zohocrm.workflows.group",
    "unblock_bounced_emails_dag": "airflow_provider_zohocrm.workflows.group",
    "unblocked_asset": "airflow_provider_zohocrm.workflows.group",
    "ZohoCRMEmulator": "airflow_provider_zohocrm.testing.server",
}

__all__ = [
    "UnblockEmailOperator",
    "UnblockJobConfig",
    "ZohoCRMEmulator",
    "ZohoCRMHook",
    "ZohoUnblockTaskGroup",
    "__version__",
    "get_provider_info",
    "unblock_bounced_emails_dag",
    "unblocked_asset",
]


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
