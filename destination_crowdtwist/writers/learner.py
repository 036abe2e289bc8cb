"""Which request an upsert row tries first: update or create, learned from the rows of this sync.

Upsert costs two requests for a row whose first guess is wrong (PUT -> 404 -> POST for a new member,
or POST -> "already taken" -> PUT for an existing one). :class:`UpsertLearner` watches the sync's rows
and picks the cheaper first guess, so requests per row stay close to 1 whether the rows are all new,
all existing or mixed. Correctness never depends on the guess: either order falls back to the other
request (``writers/upsert.py``).
"""

from __future__ import annotations

import threading


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
    probes (the bench's ``upsert_new`` grid row); the mean switches after the first answer.

    Why a tie alternates: with nothing known (``initial_p_new`` 0.5, the default) both orders cost the
    same, and whichever one a tie broke to would waste the whole first window on the data that suits the
    other (22 requests on the bench's 500-row first sync, 4 to 5% of it). Alternating wastes half the
    window whatever the members are: the minimax of docs/performance.md, "what not knowing costs".
    """

    def __init__(
        self, strategy: str = "auto", *, alpha: float = 0.05, initial_p_new: float = 0.5, prior_weight: int = 2,
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
        self._alternate = True  # the order a tie gave last: the first tied row goes update-first
        # What the guesses cost, for the end-of-sync log line: rows whose first request was this learner's
        # guess, and those of them that sent the other request too (the guess was wrong).
        self.guessed_rows = 0
        self.second_requests = 0

    def _choose(self, p_new: float) -> bool | None:
        """Create-first (True), update-first (False), or a tie (None): the rows alternate."""
        if self.strategy == "create_first":
            return True
        if self.strategy == "update_first":
            return False
        # The mean is kept exact (below), so an even split of what is known is exactly 0.5.
        return None if p_new == 0.5 else p_new > 0.5

    def create_first(self) -> bool:
        """Whether the next upsert row should try a create first."""
        with self._lock:
            if self._last_choice is None:
                self._alternate = not self._alternate
                return self._alternate
            return self._last_choice

    def observe(self, *, existed: bool) -> None:
        """Learn from one upsert row whose member's existence is now known."""
        with self._lock:
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

    def count(self, *, both_sent: bool) -> None:
        """One row whose first request was this learner's guess ended; ``both_sent``: it needed the other too."""
        with self._lock:
            self.guessed_rows += 1
            self.second_requests += both_sent

    def summary(self) -> str | None:
        """What the guesses cost this sync, for the operator's log (None when no row was guessed)."""
        with self._lock:
            if not self.guessed_rows:
                return None
            order = {True: "create first", False: "update first", None: "update and create first in turn"}[
                self._last_choice]
            line = (f"User Profile upsert: {self.second_requests:,} of the {self.guessed_rows:,} rows whose member "
                    f"was not known beforehand needed both requests (the first guess, update or create, was wrong; "
                    f"upsert_strategy {self.strategy}, ending on {order})")
            if self.strategy == "auto" and self.second_requests:
                # The learner pays one in-flight window of wrong guesses before the first answers arrive
                # (docs/performance.md, the upsert of new members); a fixed order pays none when it is right.
                line += (". When a stream's rows are known to be new members (or existing ones), upsert_strategy "
                         "create_first (or update_first) starts with the right request from the first row")
            return line + "."

    @property
    def p_new(self) -> float:
        """Current estimate of the share of new members."""
        with self._lock:
            return self._p_new
