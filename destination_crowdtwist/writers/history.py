"""Activity history answers: what one page proves, and when a member's history has been read to its end.

Exactly-once credits rest on this answer: a dedupe key absent from the history means "send the
credit". So an answer counts only when it proves something (docs/crowdtwist-api-notes.md §3, §6):

* the v2.1 page ``{"paging": {"total", "pages", "prev_page", "next_page"}, "activities": [...]}``
  (the list may sit under another common key; the v2.1 history envelope itself is NOT FOUND, this is
  the documented shape of the other v2.1 lists), followed page by page until ``next_page`` is null;
* a bare list, the legacy v2 shape: complete when it is shorter than the page size asked for, or
  longer (the server ignored paging); a full page may have a next one, which is then read.

Anything else -- an object with no list of credits, ``{}``, ``null``, an item that is not an
object, a ``next_page`` that cannot be followed, pages holding fewer credits than ``paging.total``
-- raises :class:`UnprovenHistory`: never "no credits". Pure functions; the reads are in
``writers/activities.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Credits asked for per page: the largest page the v2.1 lists serve (docs/crowdtwist-api-notes.md §6).
PAGE_SIZE = 25
#: At most this many pages are read per member and sync (2,500 credits within credit_history_days).
#: A history that runs past it cannot prove a credit absent; the sync stops (see activities.py).
MAX_PAGES = 100
#: Where a wrapped list of credits may sit; "activities" is the documented v2.1 list key.
LIST_KEYS = ("activities", "activity_history", "history", "data", "items", "results")

_PAGE_IN_LINK = re.compile(r"[?&]page=(\d+)")


class UnprovenHistory(Exception):
    """The answer cannot prove that a credit is absent. The text says why; it holds no body and no PII."""


@dataclass(frozen=True)
class Page:
    """One page of a member's history: its items, the page to read next (None: the last) and ``paging.total``."""

    items: Sequence[Mapping[str, Any]]
    next_page: int | None
    total: int | None = None


def parse_page(data: Any, *, page: int, page_size: int) -> Page:
    """What page ``page`` of a history answer holds, or :class:`UnprovenHistory`."""
    if isinstance(data, list):
        # No paging information: a short page is the last one, a longer list is everything.
        return Page(_items(data), page + 1 if len(data) == page_size else None)
    if not isinstance(data, Mapping):
        raise UnprovenHistory(f"the answer is {_kind(data)}, not a list of credits")
    if not data:
        raise UnprovenHistory("the answer is an empty object")
    found = next((key for key in LIST_KEYS if isinstance(data.get(key), list)), None)
    if found is None:
        keys = ", ".join(sorted(str(key)[:40] for key in data)[:6]) or "none"
        raise UnprovenHistory(f"the answer is an object without a list of credits (keys: {keys})")
    items = _items(data[found])
    paging = data.get("paging")
    if paging is None:
        return Page(items, page + 1 if len(items) == page_size else None)
    if not isinstance(paging, Mapping):
        raise UnprovenHistory(f"its paging is {_kind(paging)}, not an object")
    total = paging.get("total")
    total = total if isinstance(total, int) and not isinstance(total, bool) else None
    return Page(items, _next_page(paging, page), total)


class PageWalk:
    """One member's history read page by page: each answer parsed, and the checks across pages."""

    def __init__(self, page_size: int = PAGE_SIZE) -> None:
        self.page_size = page_size
        self.page = 1  # the page to ask for next
        self.seen = 0
        self._previous: Sequence[Mapping[str, Any]] = ()

    def take(self, data: Any) -> Page:
        """Parse the answer for :attr:`page` and move on to the next one; UnprovenHistory if it proves nothing."""
        parsed = parse_page(data, page=self.page, page_size=self.page_size)
        if self._previous and list(parsed.items) == list(self._previous):
            raise UnprovenHistory(f"page {self.page} repeats page {self.page - 1} (the page parameter is ignored)")
        self.seen += len(parsed.items)
        if parsed.next_page is None and parsed.total is not None and self.seen < parsed.total:
            raise UnprovenHistory(f"its pages hold {self.seen} credits where paging.total says {parsed.total}")
        self._previous = parsed.items
        if parsed.next_page is not None:
            self.page = parsed.next_page
        return parsed


def _next_page(paging: Mapping[str, Any], page: int) -> int | None:
    if "next_page" in paging:
        raw = paging["next_page"]
        if raw is None or raw == "" or raw is False:
            return None
        number: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            number = raw
        elif isinstance(raw, str):
            text = raw.strip()
            link = _PAGE_IN_LINK.search(text)
            number = int(text) if text.isdigit() else int(link.group(1)) if link else None
        # Only the page right after this one is followed: a jump would skip credits unseen.
        if number != page + 1:
            raise UnprovenHistory(f"page {page} names a next page that cannot be followed ({_kind(raw)})")
        return number
    pages = paging.get("pages")
    if isinstance(pages, int) and not isinstance(pages, bool):
        return page + 1 if page < pages else None
    raise UnprovenHistory("its paging has neither next_page nor pages")


def _items(values: list[Any]) -> list[Mapping[str, Any]]:
    if not all(isinstance(value, Mapping) for value in values):
        raise UnprovenHistory("an item of the list is not an object")
    return values


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an empty object" if not value else "an object"
    return f"a {type(value).__name__}"
