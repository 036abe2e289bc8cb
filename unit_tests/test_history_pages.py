"""writers/history.py: which activity-history answers prove anything, and how pages are followed."""

from __future__ import annotations

import re
from typing import Any

import pytest

from destination_crowdtwist.writers.history import PageWalk, UnprovenHistory, parse_page

ITEM = {"activity_id": "1001", "extra_data": {"airbyte_dedupe_key": "k"}}


def paging(next_page: Any = None, **more: Any) -> dict[str, Any]:
    return {"total": 1, "pages": 1, "prev_page": None, "next_page": next_page, **more}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (None, "null"),
        ({}, "empty object"),
        ({"paging": paging(), "entries": [ITEM]}, "keys: entries, paging"),
        ({"error": "internal_error", "message": "x"}, "keys: error, message"),
        ("[]", "a str"),
        ([ITEM, 3], "not an object"),
        ({"paging": [], "activities": []}, "paging is a list"),
        ({"paging": {"total": 3}, "activities": []}, "neither next_page nor pages"),
        ({"paging": paging(next_page=5), "activities": [ITEM]}, "cannot be followed (a int)"),
        ({"paging": paging(next_page="soon"), "activities": [ITEM]}, "cannot be followed (a str)"),
    ],
)
def test_answers_that_prove_nothing(data: Any, why: str) -> None:
    with pytest.raises(UnprovenHistory, match=re.escape(why)):
        parse_page(data, page=1, page_size=25)


@pytest.mark.parametrize(
    ("data", "next_page"),
    [
        ({"paging": paging(), "activities": [ITEM]}, None),
        ({"paging": paging(next_page=2), "activities": [ITEM]}, 2),
        ({"paging": paging(next_page="2"), "activities": [ITEM]}, 2),
        ({"paging": paging(next_page="https://api1.crowdtwist.com/v2.1/x?page=2&page_size=25"), "activities": []}, 2),
        ({"paging": {"pages": 3}, "activity_history": [ITEM]}, 2),
        ({"paging": {"pages": 1}, "activity_history": [ITEM]}, None),
        ({"activities": [ITEM]}, None),  # no paging, a short page: the last one
        ([ITEM], None),  # the legacy array: shorter than the page size asked for
        ([ITEM] * 25, 2),  # a full page may have a next one
        ([ITEM] * 30, None),  # longer than asked: the server ignored paging and sent everything
    ],
)
def test_answers_that_say_where_the_list_ends(data: Any, next_page: int | None) -> None:
    page = parse_page(data, page=1, page_size=25)
    assert page.next_page == next_page
    assert all(item == ITEM for item in page.items)


def test_a_walk_checks_across_pages() -> None:
    walk = PageWalk(page_size=1)
    walk.take({"paging": paging(next_page=2, total=3), "activities": [ITEM]})
    assert walk.page == 2
    with pytest.raises(UnprovenHistory, match="repeats page 1"):
        walk.take({"paging": paging(next_page=3, total=3), "activities": [ITEM]})

    short = PageWalk(page_size=1)
    short.take({"paging": paging(next_page=2, total=3), "activities": [ITEM]})
    with pytest.raises(UnprovenHistory, match=r"hold 1 credits where paging\.total says 3"):
        short.take({"paging": paging(total=3), "activities": []})
