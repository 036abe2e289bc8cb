"""Whether a credit is already in its member's activity history: the read-back behind exactly once.

Awards are queued (docs/crowdtwist-api-notes.md §3), so a credit accepted a moment ago may not be
visible yet: an absent key is trusted only once ``award_queue_delay_seconds`` have passed since the
request that may have landed. The history is read page by page (``writers/history.py``: what a page
proves), at most :data:`~destination_crowdtwist.writers.history.MAX_PAGES` pages per member, and
remembered per member for the sync (``writers/credit_memory.py``). An answer that cannot prove a key
absent stops the sync: it is never read as "no credits".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from destination_crowdtwist.api.errors import ConfigError, TransientError
from destination_crowdtwist.api.protocol import CrowdTwistApi
from destination_crowdtwist.api.response import ApiResponse
from destination_crowdtwist.records.rejection import Reason
from destination_crowdtwist.writers.credit import DEDUPE_KEY_FIELD, Credit, id_text
from destination_crowdtwist.writers.credit_memory import CreditMemory
from destination_crowdtwist.writers.history import MAX_PAGES, PAGE_SIZE, PageWalk, UnprovenHistory

#: An activity history item without ``activity_id`` (the v2.1 item shape is not documented) matches any activity.
ANY_ACTIVITY = "*"


class HistoryCheck:
    """Reads members' activity histories for credits' dedupe keys. See the module docstring."""

    def __init__(
        self,
        api: CrowdTwistApi,
        memory: CreditMemory,
        *,
        history_days: int,
        delay: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        """``history_days``: how far back a history is read; ``delay``: award_queue_delay_seconds."""
        self.api = api
        self._memory = memory
        self._history_days = history_days
        self._delay = delay
        self._clock = clock
        self._sleep = sleep
        #: When this attempt started: a previous attempt's credits are visible ``delay`` after it.
        self.started = clock()

    def has(self, credit: Credit, *, replay: bool, visible_from: float | None = None) -> bool:
        """Whether the member's activity history holds this credit's dedupe key.

        Awards are queued, so a credit accepted a moment ago may not be visible yet; an absent key is
        trusted only once ``award_queue_delay_seconds`` have passed since the request that may have
        landed.

        * ``replay=True`` (rows a previous attempt may have sent): that attempt ended before this sync
          started, so one read per member taken ``delay`` after the start is conclusive; reads are
          cached per member (our own credits are added to the cache). ``visible_from``: an earlier
          time from which the earlier request's award is known to be visible (the ledger's quiet close
          of the session that sent it, plus the delay: ``writers/ledger.py``); then no wait is needed
          once it has passed. A cached read counts only if it began at or after that time (or after
          the start's delay): a read taken sooner may predate a queued award.
        * ``replay=False`` (an uncertain outcome just now): poll with growing pauses until the key
          shows up or the delay has passed.
        """
        delay = self._delay
        if replay:
            ready = self.started + delay if visible_from is None else min(visible_from, self.started + delay)
            wait = ready - self._clock()
            if wait > 0:
                self._sleep(wait)
            return self._contains(credit, refresh=False, read_since=ready)
        deadline = self._clock() + delay
        pause = min(0.25, max(delay / 8, 0.01))
        while True:
            if self._contains(credit, refresh=True):
                return True
            now = self._clock()
            if now >= deadline:
                return False
            self._sleep(min(pause, deadline - now))
            pause = min(pause * 2, 2.0)

    def _contains(self, credit: Credit, *, refresh: bool, read_since: float | None = None) -> bool:
        """Whether the member's history holds the credit's key: read once per sync, unless ``refresh`` (or
        the read held began before ``read_since``).
        """
        member = (credit.id_type, credit.user_id)
        tokens = (_token(*credit.history_key), _token(ANY_ACTIVITY, credit.dedupe_key))
        if not refresh:
            known = self._memory.history_has(member, tokens[0], read_since=read_since)
            if known is not None:
                return known or bool(self._memory.history_has(member, tokens[1]))
        # A replay read follows the wait until read_since (a wait cut short stops the sync: the read is
        # then refused), so it began at read_since at the earliest, whatever the wall clock says a hair sooner.
        began = self._clock() if read_since is None else max(self._clock(), read_since)
        keys = {_token(*pair) for pair in self._read(credit)}
        self._memory.set_history(member, keys, read_at=began)
        return any(token in keys for token in tokens)

    def _read(self, credit: Credit) -> set[tuple[str, str]]:
        """The dedupe keys in the member's activity history, every page of it (bounded).

        An answer that cannot prove a key absent stops the sync (:meth:`_unproven`); it is never
        taken for an empty history, which would send the credit again. Stopping rather than holding
        the row as rejected keeps both promises: nothing doubled (the row is not sent) and nothing
        lost (no state past it is echoed, so the platform's next attempt verifies it again), and
        such an answer is seldom about one row (a changed envelope, a proxy), so rejecting rows one
        by one would only hide it.
        """
        now = int(self._clock())
        start, end = now - self._history_days * 86_400, now + 3600
        keys: set[tuple[str, str]] = set()
        walk = PageWalk(PAGE_SIZE)
        for _ in range(MAX_PAGES):
            # Newest first: a credit landing while the pages are read pushes older ones down a page,
            # so one may be read twice, never skipped (and this member's own credits wait for the read).
            response = self.api.activity_history(
                credit.user_id, credit.id_type, start, end, page=walk.page, page_size=PAGE_SIZE
            )
            if not response.ok:
                if self._member_absent(credit, response):
                    return set()  # no member, no credit: the credit's own "not found" rejects the row
                raise self._unreadable(response)
            try:
                parsed = walk.take(response.data)
            except UnprovenHistory as exc:
                raise self._unproven(str(exc), response) from None
            keys.update(_history_keys(parsed.items))
            if parsed.next_page is None:
                return keys
        raise ConfigError(
            f"A member's activity history runs past {MAX_PAGES} pages ({MAX_PAGES * PAGE_SIZE:,} credits) within "
            f"credit_history_days ({self._history_days} days), so the connector cannot prove that a row "
            "was not credited before; nothing was sent for it. Lower credit_history_days so that one member's "
            "credits in that window fit, or keep a ledger_path between syncs.",
        )

    def _member_absent(self, credit: Credit, response: ApiResponse) -> bool:
        """Whether a "not found" refusal of the history means the member does not exist (then no credit can exist).

        "User does not exist." on the history is taken for true only when the profile says so too: a
        history "not found" for a member who exists (one credited a moment ago) proves nothing.
        """
        if response.resolution.reason is not Reason.NOT_FOUND:
            return False
        profile = self.api.get_user(credit.user_id, credit.id_type)
        if profile.resolution.reason is Reason.NOT_FOUND:
            return True
        if profile.ok:
            raise self._unproven("it says 'User does not exist.' for a member whose profile exists", response)
        raise self._unreadable(profile)

    @staticmethod
    def _unproven(problem: str, response: ApiResponse) -> TransientError:
        return TransientError(
            f"CrowdTwist's activity history answer cannot prove whether a credit was already awarded: {problem}. "
            "The row was not sent and no state after it is echoed, so no points are credited twice; the next "
            "attempt verifies it again. If this persists, CrowdTwist's history answer has changed: report this "
            "message to the connector's maintainers.",
            status=response.status,
            error_code=response.error_code,
            api_message=response.safe_message,
            request_line=response.request_line,
        )

    @staticmethod
    def _unreadable(response: ApiResponse) -> TransientError:
        """A refusal of a read that verification needs (the API raised already for credentials and base URL).

        Never guess: if the history cannot be read, crediting could double the points.
        """
        return TransientError(
            f"Activity history could not be read (HTTP {response.status}) to verify a credit; stopping so "
            "that no points are credited twice.",
            status=response.status,
            error_code=response.error_code,
            api_message=response.safe_message,
        )

    def remember(self, credit: Credit) -> None:
        """Add a credit this sync made to its member's history as read (the read is not made again)."""
        self._memory.remember((credit.id_type, credit.user_id), _token(*credit.history_key))


def _token(activity_id: str, dedupe_key: str) -> str:
    """A history entry as one string: the activity and the dedupe key (a unit separator between)."""
    return f"{activity_id}\x1f{dedupe_key}"


def _history_keys(items: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(activity, dedupe key) of every credit of ours in a page of history items."""
    keys: set[tuple[str, str]] = set()
    for item in items:
        activity = item.get("activity_id")
        # An item without activity_id (the v2.1 item shape is not documented) matches any activity.
        activity_text = id_text(activity) if isinstance(activity, str | int | float) else ANY_ACTIVITY
        extra = item.get("extra_data")
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except ValueError:
                extra = None
        if isinstance(extra, Mapping) and extra.get(DEDUPE_KEY_FIELD) is not None:
            keys.add((activity_text, str(extra[DEDUPE_KEY_FIELD])))
    return keys
