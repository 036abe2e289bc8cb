"""Which request an upsert row tries first: update or create, learned from the rows of this sync.

Upsert costs two requests for a row whose first guess is wrong (PUT -> 404 -> POST for a new member,
or POST -> "already taken" -> PUT for an existing one). :class:`UpsertLearner` watches the sync's rows
and picks the cheaper first guess, so requests per row stay close to 1 whether the rows are all new,
all existing or mixed. Correctness never depends on the guess: either order falls back to the other
request (``writers/upsert.py``).

Before the first answers come back, every row would go out on the prior's guess; with ``hold_seconds``
the rows after the first few wait for those answers instead (:meth:`UpsertLearner.wait_for_guess`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class UpsertLearner:
    """Chooses update-first or create-first for upsert rows from what this sync has seen.

    Update-first costs ``1 + p_new`` requests per row, create-first ``2 - p_new``; so create-first wins
    when more than half of the rows are new members. ``p_new`` starts as the plain mean of the rows
    seen so far, with ``initial_p_new`` counted as ``prior_weight`` rows, and becomes an exponentially
    weighted average of recent rows (weight ``alpha``) once that many rows were seen, so a sync whose
    data changes character midway (e.g. existing members first, then sign-ups) switches back and forth.

    Why a mean first: every row dispatched before the learner switches costs a wasted request, and
    at the start of a sync a whole in-flight window of rows (tens to a hundred and more) goes out
    before the first answers come back. A pure average with ``alpha`` = 0.05 needed 8 new members
    in a row to switch, so a sync of new members wasted about 4% of its requests on update-first
    probes (the bench's ``upsert_new`` grid row); the mean switches after two.

    ``hold_seconds`` (None: no hold): see :meth:`wait_for_guess`; ``clock`` is monotonic seconds.
    """

    def __init__(
        self, strategy: str = "auto", *, alpha: float = 0.05, initial_p_new: float = 0.25, prior_weight: int = 2,
        hold_seconds: float | None = None, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.strategy = strategy
        self._alpha = alpha
        self._p_new = initial_p_new
        # The mean's rows (the prior's, then one per row observed) and their sum of "new" (1.0 each), kept
        # apart so that the mean is exact (an incremental update would read 0.5 as 0.5000000000000001).
        self._weight = max(1, prior_weight)
        self._total = initial_p_new * self._weight
        self._lock = threading.Lock()
        self.switches = 0
        self._last_choice = self._choose(initial_p_new)
        # The hold before the first answers: the probes (the first rows guessed, as many as the prior's
        # weight: enough answers to move the mean past 0.5 when they all agree), how many of them ended.
        self._changed = threading.Condition(self._lock)
        self._hold = hold_seconds if strategy == "auto" else None
        self._clock = clock
        self._probes = self._weight
        self._guessed = self._observed = self._probes_ended = 0
        self._hold_until: float | None = None
        self.held_rows = 0  # rows that waited for the first answers (tests, the bench's reading)

    def _choose(self, p_new: float) -> bool:
        if self.strategy == "create_first":
            return True
        if self.strategy == "update_first":
            return False
        return p_new > 0.5

    def create_first(self) -> bool:
        """Whether the next upsert row should try a create first."""
        with self._lock:
            return self._last_choice

    def wait_for_guess(self) -> tuple[bool, bool]:
        """The row's first guess (create first?), after the first answers when the hold is on; and
        whether the row is a probe (then the caller reports its end with :meth:`probe_ended`).

        Why hold: before the first answers come back, every row goes out on the prior's guess (update
        first), and for a sync of new members each costs a wasted ``PUT`` answered "not found". That
        window is about as many rows as the in-flight target allows before the first answer (about 20,
        ``api/concurrency.py``), 4.4% of a 500-row sync of new members at 100 ms. With the hold, only the
        probes go; the other rows wait until the probes were observed (the guess is informed), or all
        ended without telling (rejected rows), or ``hold_seconds`` passed (answers that do not come: the
        rows then go on the prior). What it costs a sync of members that exist (the prior was right): the
        window's rows start one first answer later, once per sync; never a request. Without a hold the
        answer is the learner's current guess at once.
        """
        with self._lock:
            if self._hold is None or self._informed():
                return self._last_choice, False
            if self._guessed < self._probes:
                self._guessed += 1
                if self._hold_until is None:
                    self._hold_until = self._clock() + self._hold
                return self._last_choice, True
            self.held_rows += 1
            while not self._informed():
                left = (self._hold_until or 0.0) - self._clock()
                if left <= 0.0:
                    self._hold = None  # the answers did not come in time: no more holding in this sync
                    break
                self._changed.wait(left)
            return self._last_choice, False

    def _informed(self) -> bool:
        return self._observed >= self._probes or self._probes_ended >= self._probes

    def probe_ended(self) -> None:
        """A probe row (:meth:`wait_for_guess`) ended, whatever its outcome (observed or not)."""
        with self._lock:
            self._probes_ended += 1
            if self._probes_ended == self._probes:
                self._changed.notify_all()

    def observe(self, *, existed: bool) -> None:
        """Learn from one upsert row whose member's existence is now known."""
        with self._lock:
            self._observed += 1
            if self._observed == self._probes:
                self._changed.notify_all()  # the held rows go now, on the informed guess
            new = 0.0 if existed else 1.0
            if 1.0 / (self._weight + 1) >= self._alpha:
                self._weight += 1
                self._total += new
                self._p_new = self._total / self._weight
            else:
                self._p_new += self._alpha * (new - self._p_new)
            choice = self._choose(self._p_new)
            if choice != self._last_choice:
                self.switches += 1
                self._last_choice = choice

    @property
    def p_new(self) -> float:
        """Current estimate of the share of new members."""
        with self._lock:
            return self._p_new
