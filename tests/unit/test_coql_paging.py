"""Splitting a user's COQL query for keyset paging (pure: no HTTP)."""

from __future__ import annotations

import pytest

from airflow_provider_zohocrm.zoho.coql_paging import keyset_query
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError


def test_criteria_are_wrapped_and_the_cursor_added() -> None:
    plan = keyset_query("select id, Email from Leads where A = 1 or B = 2")
    assert (
        plan.page(None, 2000)
        == "select id, Email from Leads where (A = 1 or B = 2) order by id asc limit 2000"
    )
    assert plan.page(42, 2000) == (
        "select id, Email from Leads where (A = 1 or B = 2) and id > 42 order by id asc limit 2000"
    )


def test_a_query_without_criteria_gets_a_no_op_one() -> None:
    plan = keyset_query("select id from Leads")
    assert plan.page(None, 10) == "select id from Leads where id is not null order by id asc limit 10"
    assert plan.page(7, 10) == "select id from Leads where id > 7 order by id asc limit 10"


@pytest.mark.parametrize("order", ["order by id", "ORDER BY id asc", "order  by 'id' ASC"])
def test_an_order_by_id_is_taken_over(order: str) -> None:
    plan = keyset_query(f"select id from Leads where X is null {order}")
    assert plan.page(5, 3) == "select id from Leads where (X is null) and id > 5 order by id asc limit 3"


@pytest.mark.parametrize("order", ["order by id desc", "ORDER BY id DESC", "Order By 'id' Desc"])
def test_order_by_id_desc_pages_downwards(order: str) -> None:
    """In whatever case the direction is written (COQL keywords ignore case): descending, so the cursor goes
    down (``id < last``); read as ascending it would page the wrong way from the first page on."""
    plan = keyset_query(f"select id from Leads where X is null {order}")
    assert plan.descending
    assert plan.page(None, 3) == "select id from Leads where (X is null) order by id desc limit 3"
    assert plan.page(5, 3) == "select id from Leads where (X is null) and id < 5 order by id desc limit 3"


def test_keywords_inside_literals_and_subqueries_are_not_clauses() -> None:
    query = (
        "select id from Leads where (Note = 'where it is, order by name' and"
        " Owner in (select id from users where x = 1 order by y))"
    )
    plan = keyset_query(query)
    assert plan.criteria == query.split(" where ", 1)[1]
    assert plan.head == "select id from Leads"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("select id from Leads where X = 1 order by Last_Name", "ordered by 'Last_Name'"),
        ("select id from Leads where X = 1 order by id, Last_Name", "ordered by"),
        ("select COUNT(id) from Leads where X = 1", "aggregate"),
        ("select X from Leads where X = 1 group by X", "group by"),
        ("select id from Leads where X = 1 limit 5", "limit"),
        ("select id from Leads where X = 1 offset 5", "limit"),
        ("select id from Leads where", "where clause is empty"),
        ("select id from Leads order by id where X = 1", "before its order by"),
    ],
)
def test_what_cannot_be_paged_by_id_is_refused_clearly(query: str, message: str) -> None:
    with pytest.raises(ZohoValidationError, match=message):
        keyset_query(query)
