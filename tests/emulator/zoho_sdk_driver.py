"""Drives Zoho's own Python SDK (``zohocrmsdk8-0``, unmodified) against an emulator; run as a subprocess.

``python tests/emulator/zoho_sdk_driver.py CONFIG.json`` prints one JSON object: what the SDK *parsed* for each step.
The SDK keeps process-wide state (``Initializer`` is a singleton, ``Utility`` caches field types per class), so
each test runs it in a process of its own, with its token store and resource path in the test's tmp dir.

Only what a real user sets is set: a ``DataCenter.Environment`` with the emulator's URLs, an ``OAuthToken`` with
the default ``find_user=True``, a ``FileStore`` and a resource path. No monkeypatch, no pre-seeded cache.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.api.logger import Logger
from zohocrmsdk.src.com.zoho.crm.api import ParameterMap
from zohocrmsdk.src.com.zoho.crm.api import coql as cq
from zohocrmsdk.src.com.zoho.crm.api import custom_views as cv
from zohocrmsdk.src.com.zoho.crm.api import fields as fl
from zohocrmsdk.src.com.zoho.crm.api import org as og
from zohocrmsdk.src.com.zoho.crm.api import record as rc
from zohocrmsdk.src.com.zoho.crm.api import unblock_email as ue
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.util.choice import Choice


def plain(value: Any) -> Any:
    """SDK values as JSON: a Choice becomes its value, ints stay ints (the SDK turns ids into ``int``)."""
    if isinstance(value, Choice):
        return value.get_value()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(type(value).__name__)


def kind(obj: Any) -> str:
    """The SDK class the answer was parsed into (``ResponseWrapper``, ``ActionWrapper``, ``APIException`` …)."""
    return type(obj).__name__


def api_exception(obj: Any) -> dict[str, Any]:
    return {
        "kind": kind(obj),
        "code": plain(obj.get_code()),
        "status": plain(obj.get_status()),
        "message": plain(obj.get_message()),
        "details": plain(obj.get_details()),
    }


def action_items(obj: Any) -> list[dict[str, Any]]:
    return [
        {
            "kind": kind(item),
            "code": plain(item.get_code()),
            "status": plain(item.get_status()),
            "message": plain(item.get_message()),
            "details": plain(item.get_details()),
        }
        for item in obj.get_data()
    ]


def get_records(step: dict[str, Any]) -> dict[str, Any]:
    """Page through a custom view with page_token, as the SDK's docs show; stop when more_records is false."""
    ops = rc.RecordOperations(step["module"])
    ids: list[int] = []
    values: dict[str, Any] = {}
    pages = 0
    token: str | None = None
    while True:
        params = ParameterMap()
        params.add(rc.GetRecordsParam.cvid, step["cvid"])
        params.add(rc.GetRecordsParam.fields, step["fields"])
        params.add(rc.GetRecordsParam.per_page, 200)
        if token:
            params.add(rc.GetRecordsParam.page_token, token)
        response = ops.get_records(params)
        if response.get_status_code() == 204:
            break
        obj = response.get_object()
        if not isinstance(obj, rc.ResponseWrapper):
            return {"error": api_exception(obj), "ids": ids, "pages": pages}
        pages += 1
        for record in obj.get_data():
            ids.append(record.get_id())
            if len(values) < 3:
                values[str(record.get_id())] = {
                    name: plain(record.get_key_value(name)) for name in step["fields"].split(",")
                }
        info = obj.get_info()
        if not info.get_more_records():
            break
        token = info.get_next_page_token()
    return {"ids": ids, "pages": pages, "values": values}


def coql_by_id(step: dict[str, Any]) -> dict[str, Any]:
    """Page a COQL query by record id with the SDK's CoqlOperations: ``… and id > last order by id limit N``."""
    ops = cq.CoqlOperations()
    ids: list[int] = []
    calls = 0
    last: int | None = None
    while True:
        criteria = f"({step['criteria']})" + (f" and id > {last}" if last is not None else "")
        body = cq.BodyWrapper()
        body.set_select_query(
            f"select id from {step['module']} where {criteria} order by id asc limit {step['limit']}"
        )
        response = ops.get_records(body)
        calls += 1
        if response.get_status_code() == 204:
            break
        obj = response.get_object()
        if not isinstance(obj, cq.ResponseWrapper):
            return {"error": api_exception(obj), "ids": ids, "calls": calls}
        page = [int(record.get_id()) for record in obj.get_data()]
        ids += page
        if not obj.get_info().get_more_records() or not page:
            break
        last = page[-1]
    return {"ids": ids, "calls": calls}


def get_fields(step: dict[str, Any]) -> dict[str, Any]:
    params = ParameterMap()
    params.add(fl.GetFieldsParam.module, step["module"])
    response = fl.FieldsOperations().get_fields(params)
    obj = response.get_object()
    if response.get_status_code() == 204:
        return {"status": 204}
    if not isinstance(obj, fl.ResponseWrapper):
        return {"status": response.get_status_code(), "error": api_exception(obj)}
    return {
        "status": response.get_status_code(),
        "fields": [
            {
                "api_name": f.get_api_name(),
                "data_type": f.get_data_type(),
                "field_label": f.get_field_label(),
                "id": f.get_id(),
                "custom_field": f.get_custom_field(),
                "pick_list_values": [p.get_actual_value() for p in f.get_pick_list_values() or []],
            }
            for f in obj.get_fields()
        ],
    }


def view_json(view: Any) -> dict[str, Any]:
    return {
        "id": view.get_id(),
        "name": view.get_name(),
        "display_value": view.get_display_value(),
        "system_name": view.get_system_name(),
        "category": view.get_category(),
        "default": view.get_default(),
        "system_defined": view.get_system_defined(),
        "access_type": plain(view.get_access_type()),
        "created_time": view.get_created_time().isoformat() if view.get_created_time() else None,
    }


def get_custom_views(step: dict[str, Any]) -> dict[str, Any]:
    params = ParameterMap()
    params.add(cv.GetCustomViewsParam.module, step["module"])
    response = cv.CustomViewsOperations().get_custom_views(params)
    obj = response.get_object()
    if response.get_status_code() == 204:
        return {"status": 204}
    if not isinstance(obj, cv.ResponseWrapper):
        return {"status": response.get_status_code(), "error": api_exception(obj)}
    info = obj.get_info()
    return {
        "status": response.get_status_code(),
        "views": [view_json(v) for v in obj.get_custom_views()],
        "info": {
            "default": info.get_default(),
            "count": info.get_count(),
            "page": info.get_page(),
            "per_page": info.get_per_page(),
            "more_records": info.get_more_records(),
            "translation": info.get_translation().get_public_views() if info.get_translation() else None,
        },
    }


def get_custom_view(step: dict[str, Any]) -> dict[str, Any]:
    params = ParameterMap()
    params.add(cv.GetCustomViewParam.module, step["module"])
    response = cv.CustomViewsOperations().get_custom_view(int(step["id"]), params)
    if response.get_status_code() == 204:
        return {"status": 204}
    obj = response.get_object()
    if not isinstance(obj, cv.ResponseWrapper):
        return {"status": response.get_status_code(), "error": api_exception(obj)}
    return {"status": response.get_status_code(), "views": [view_json(v) for v in obj.get_custom_views()]}


def get_org(step: dict[str, Any]) -> dict[str, Any]:
    response = og.OrgOperations().get_organization()
    obj = response.get_object()
    if not isinstance(obj, og.ResponseWrapper):
        return {"status": response.get_status_code(), "error": api_exception(obj)}
    org = obj.get_org()[0]
    return {
        "status": response.get_status_code(),
        "id": org.get_id(),
        "zgid": org.get_zgid(),
        "company_name": org.get_company_name(),
        "primary_email": org.get_primary_email(),
        "time_zone": org.get_time_zone(),
    }


def unblock_body(step: dict[str, Any], with_ids: bool) -> ue.BodyWrapper:
    body = ue.BodyWrapper()
    body.set_unblock_fields(step["unblock_fields"])
    if with_ids:
        body.set_ids([str(i) for i in step["ids"]])
    return body


def unblock_single(step: dict[str, Any]) -> dict[str, Any]:
    response = ue.UnblockEmailOperations(step["module"]).unblock_email(
        int(step["id"]), unblock_body(step, False)
    )
    obj = response.get_object()
    out: dict[str, Any] = {"status": response.get_status_code(), "kind": kind(obj)}
    if isinstance(obj, ue.ActionWrapper):
        out["items"] = action_items(obj)
    else:
        out["error"] = api_exception(obj)
    return out


def unblock_bulk(step: dict[str, Any]) -> dict[str, Any]:
    response = ue.UnblockEmailOperations(step["module"]).unblock_emails(unblock_body(step, True))
    obj = response.get_object()
    out: dict[str, Any] = {"status": response.get_status_code(), "kind": kind(obj)}
    if isinstance(obj, ue.ActionWrapper):
        out["items"] = action_items(obj)
    else:
        out["error"] = api_exception(obj)
    return out


STEPS = {
    "get_records": get_records,
    "coql_by_id": coql_by_id,
    "get_fields": get_fields,
    "get_custom_views": get_custom_views,
    "get_custom_view": get_custom_view,
    "get_org": get_org,
    "unblock_single": unblock_single,
    "unblock_bulk": unblock_bulk,
}


def main(config_path: str) -> int:
    with open(config_path, encoding="utf-8") as fh:
        config = json.load(fh)
    url = config["url"]
    environment = DataCenter.Environment(url, f"{url}/oauth/v2/token", url)
    token = OAuthToken(
        client_id=config["client_id"],
        client_secret=config["client_secret"],
        refresh_token=config["refresh_token"],
    )
    Initializer.initialize(
        environment=environment,
        token=token,
        store=FileStore(config["token_store"]),
        resource_path=config["resource_path"],
        logger=Logger.get_instance(Logger.Levels.INFO, config["log_file"]),
    )
    results = [STEPS[step["call"]](step) for step in config["steps"]]
    sys.stdout.write(json.dumps({"results": results}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
