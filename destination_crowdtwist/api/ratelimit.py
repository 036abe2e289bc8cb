"""A request budget shared by all worker threads: smooth pacing, a short dip on 429, fast return.

CrowdTwist's limit (10,000 requests/minute per program) lives in Oracle's contract, not the API docs,
and no 429, Retry-After or X-RateLimit-* header is documented (docs/crowdtwist-api-notes.md §5). So the
budget paces to a configured maximum and adapts when a 429 does arrive.

Pacing is a token bucket written in its "virtual scheduling" form (GCRA): each ``acquire`` reserves
the next free send slot under the lock and sleeps outside it, so many threads queue fairly and
nobody busy-waits. The burst tolerance is small (50 ms of the rate by default): a server's own
bucket may allow much less than a second of burst (0.2 s drew a 429 in practice), and a long wait
(idle input, the award-queue wait of credit verification) must not turn into a burst when every
worker wakes up at once.

On a 429 (one congestion event per ``cut_cooldown_seconds``: the other requests that were in flight
answer 429 too) the budget

1. sets the *good* rate it will return to. When 429s kept coming since the previous (recent) cut
   *and* the connector was really sending at its paced rate all that time, the server was saturated
   and revealed its rate: the answers it accepted per second since that cut, times
   ``reveal_margin``. They are counted by *when their requests were sent*, not when the answers
   came back: a gateway answers 429 at once while an accepted request's answer takes a round trip,
   so the answers arriving just after the first cut were accepted before it, while the server's
   bucket still held its burst; counted by arrival they read a 6,000/min limit as about 6,200/min
   (the good rate then sat above the limit and drew a 429 every 2.5 s: issue 20's ``Retry-After``
   row). Counted from the refused request's send time to the latest send time whose answer is
   back, the window holds only what the saturated server accepted; a window too short to measure
   (a round trip near the cool-down) stays open until the next cut. A lone 429 (a burst the server
   did not allow, or its limit just crossed) reveals nothing, and neither do 429s while the
   connector sent less than its pace allowed (held back by its in-flight target, its input, a dip):
   what the server accepted then was the connector's own throughput, not the server's rate (a
   3-request server bucket once "revealed" 2,616/min that way, issue 20). Then the good rate backs
   off one step, ``backoff_factor``;
2. dips to ``decrease_factor`` × that rate, so the server's bucket refills a little;
3. climbs back to the good rate within ``recovery_seconds`` while answers succeed, then probes
   upward gently towards the configured maximum: by the same number of requests per second for
   every connection with the same budget (``probe_per_second`` of the maximum), not by a share of
   its own rate.

Why additive: two connections on one program (two Airbyte connections, two processes) share one
limit and cannot talk to each other. Each one's revealed rate is *its* share of what the server
accepted, and that split is set by chance (which requests found a token, a window of a second
counts ~100 answers, so ±10%). A multiplicative probe and a multiplicative cut keep whatever split
came out of the first episode for the whole sync (measured: 0.91 / 1.09 of a fair share, and the
faster one finished first and left the other alone at half the limit). With an additive probe each
cut shrinks the difference and the probes add the same to both (Chiu and Jain's AIMD result, the
reason TCP increases additively), so the split converges to equal shares (issue 20's two-connection
row, docs/performance.md). The probe is bounded at ``probe_rate_multiple`` times ``probe_per_second``
of the current rate per second, so a server whose limit is far below the budget is not probed at
tens of percent a second.

A connection left alone (the other one's sync ended) would climb back from its share to the whole
limit at that gentle pace: about 45 s from half of a 9,000/min budget. At the limit a 429 comes
every few seconds (the probe crosses the margin below the revealed rate in about 3 s), so no 429 for
``speedup_after_seconds`` means the room above the rate grew: from then on the probe doubles every
``speedup_doubling_seconds`` until a 429 says the limit is found again (a slow-start, as TCP does
after an idle time).

Against a token-bucket limit the accepted count between two 429s is the server's rate times the
time between them, whatever we sent, so after the second cut the budget paces just below the real
limit. The old response (halve, then regain 5% of the maximum per second) lost about a tenth of
the limit per 429 and needed ~10 s to recover; a dip to 80% for half a second costs ~5% of one
second. A short Retry-After (a token bucket's "1 s") is such a rate signal, not a reason to stop every
worker: the refused request alone waits it out (``retry.decide``). A Retry-After longer than
``pause_threshold_seconds`` (a fixed window that is used up) pauses everybody until then.

Throttling is reported to the operator once per *episode* (issue 18 §4): the first cut or pause of an
episode sends one WARN line (with the lowered rate) to the injected ``report`` callback; once no 429
has arrived for ``quiet_seconds`` and the rate has climbed back to its good rate, one INFO line says
the episode is over (with the rate paced at, the 429s and the duration). 429s in between are counted,
not logged. The callback is called outside the lock; the core stays testable with fake time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

#: ``report(level, message)``: a ``logging`` level and the line to log (``logger.log`` fits).
Report = Callable[[int, str], None]


class RateBudget:
    """Thread-safe shared budget of requests per minute.

    Args:
        max_per_minute: the ceiling the rate never exceeds (and starts at).
        clock / sleep: injected monotonic time source and sleep, for tests.
        burst_seconds: how many seconds' worth of requests may go back to back after idling.
        min_per_second: floor of the rate after repeated cuts (never above the maximum).
        decrease_factor: the dip below the good rate right after a 429.
        backoff_factor: the good rate after a 429 when the server has not revealed its limit yet.
        recovery_seconds: time to climb from the dip back to the good rate while requests succeed.
        probe_per_second: gentle climb above the good rate per second, as a fraction of the
            configured maximum (additive: the same requests per second for every connection).
        probe_rate_multiple: ... but never more per second than this many ``probe_per_second`` of
            the current rate.
        speedup_after_seconds / speedup_doubling_seconds: after this long without a 429 the probe
            doubles every ``speedup_doubling_seconds`` (the room above the rate grew).
        cut_cooldown_seconds: 429s arriving within this time of a cut belong to the same congestion
            event (all the requests that were in flight when the limit was hit) and cut only once.
        pause_threshold_seconds: a Retry-After longer than this pauses every worker; a shorter one
            is a rate signal like a 429 without Retry-After.
        reveal_margin: the good rate as a fraction of the rate the server revealed.
        reveal_max_seconds: a previous cut older than this reveals nothing (the server's bucket may
            have refilled completely in between).
        reveal_min_seconds / reveal_min_answers: a window of send times shorter than this, or fewer
            accepted answers in it, reveals nothing (too few to measure a rate: with round trips as
            long as the cool-down, few answers to requests sent after the last cut are back yet).
        saturated_share: the share of 429 answers since the previous cut from which the server
            counts as saturated (so what it accepted meanwhile is its limit).
        sending_share: ... provided the requests sent since that cut were at least this share of the
            send slots the pace allowed in that time (the connector was sending at its pace, so the
            server, not the connector, set what was accepted).
        report: called with (logging level, line) once when a throttling episode starts (WARNING)
            and once when it ends (INFO); None reports nothing.
        quiet_seconds: an episode ends after this long without a 429, once the rate is back at the
            good rate (long enough that a server paced at its limit, with a 429 every few seconds,
            makes one episode, not a pair of lines every few seconds).
    """

    def __init__(  # noqa: PLR0913 - tuning knobs and injected clock, all keywords with defaults
        self,
        max_per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        burst_seconds: float = 0.05,
        min_per_second: float = 1.0,
        decrease_factor: float = 0.8,
        backoff_factor: float = 0.98,
        recovery_seconds: float = 0.5,
        probe_per_second: float = 0.01,
        probe_rate_multiple: float = 3.0,
        speedup_after_seconds: float = 5.0,
        speedup_doubling_seconds: float = 1.0,
        cut_cooldown_seconds: float = 1.0,
        pause_threshold_seconds: float = 5.0,
        reveal_margin: float = 0.97,
        reveal_max_seconds: float = 30.0,
        reveal_min_seconds: float = 0.2,
        reveal_min_answers: int = 20,
        saturated_share: float = 0.02,
        sending_share: float = 0.9,
        report: Report | None = None,
        quiet_seconds: float = 30.0,
    ) -> None:
        if max_per_minute <= 0:
            raise ValueError("max_per_minute must be positive")
        for name, value in (("decrease_factor", decrease_factor), ("backoff_factor", backoff_factor),
                            ("reveal_margin", reveal_margin)):
            if not 0 < value < 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if recovery_seconds <= 0:
            raise ValueError("recovery_seconds must be positive")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._max = max_per_minute / 60.0  # requests per second from here on
        self._min = min(min_per_second, self._max)
        self._rate = self._max
        self._good = self._max
        self._burst_seconds = burst_seconds
        self._decrease_factor = decrease_factor
        self._backoff = backoff_factor
        self._recovery_seconds = recovery_seconds
        self._probe, self._probe_rate_multiple = probe_per_second, probe_rate_multiple
        self._speedup_after, self._speedup_doubling = speedup_after_seconds, speedup_doubling_seconds
        self._pause_threshold, self._reveal_margin = pause_threshold_seconds, reveal_margin
        self._reveal_max = reveal_max_seconds
        now = clock()
        # Theoretical arrival time of the next request at the current rate. It starts with no burst
        # credit: a sync's first requests go at the paced rate (a fresh sync cannot know what the
        # program's other clients used a moment ago).
        self._tat = now + self._tolerance()
        self._paused_until = now
        self._pause_generation = 0
        self._last_adjust = now
        self._cut_cooldown = cut_cooldown_seconds
        self._last_cut: float | None = None
        # The revealed rate's window, in send times (see the module doc): when the request whose 429
        # made the last cut was sent, the answers accepted since whose requests were sent after it,
        # and the latest of their send times.
        self._cut_sent: float | None = None
        self._ok_since_cut, self._ok_sent_last = 0, now
        self._reveal_min_seconds = reveal_min_seconds
        self._reveal_min_answers = reveal_min_answers
        self._throttled_at_cut = 0
        self._saturated_share = saturated_share
        self._sending_share = sending_share
        # Send slots the pace allowed (the rate integrated over time) and slots taken, since the start
        # and at the last cut: was the connector sending at its pace between two cuts?
        self._allowed = 0.0
        self._allowed_at = now
        self._allowed_at_cut = 0.0
        self._reserved = 0
        self._reserved_at_cut = 0
        self._acquired = 0
        self._throttled = 0
        self._rate_cuts = 0
        self._pauses = 0
        self._waited = 0.0
        self._report = report
        self._quiet = quiet_seconds
        # The throttling episode under way: when it started, its last 429, the 429s it counted.
        self._episode_start: float | None = None
        self._episode_last = now
        self._episode_throttled = 0

    # -- counters ---------------------------------------------------------------------------------

    @property
    def current_rate(self) -> float:
        """The current allowed rate, in requests per minute."""
        with self._lock:
            return self._rate * 60.0

    def rate_per_second(self) -> float:
        """The current allowed rate, in requests per second (what the in-flight target needs)."""
        with self._lock:
            return self._rate

    @property
    def good_rate(self) -> float:
        """The rate the budget returns to after a dip, in requests per minute."""
        with self._lock:
            return self._good * 60.0

    @property
    def max_rate(self) -> float:
        """The configured maximum, in requests per minute."""
        return self._max * 60.0

    @property
    def acquired(self) -> int:
        """Number of requests let through."""
        with self._lock:
            return self._acquired

    @property
    def throttled(self) -> int:
        """Number of 429 answers reported through ``on_throttled``."""
        with self._lock:
            return self._throttled

    @property
    def rate_cuts(self) -> int:
        """Number of congestion events that lowered the rate."""
        with self._lock:
            return self._rate_cuts

    @property
    def pauses(self) -> int:
        """Number of Retry-After pauses."""
        with self._lock:
            return self._pauses

    @property
    def waited_seconds(self) -> float:
        """Total time callers spent waiting in ``acquire``."""
        with self._lock:
            return self._waited

    def status(self) -> str:
        """``sending at most 5,820 requests/min (max_requests_per_minute 9,000)`` for progress lines."""
        with self._lock:
            return (f"sending at most {self._rate * 60:,.0f} requests/min "
                    f"(max_requests_per_minute {self._max * 60:,.0f})")

    # -- operations -------------------------------------------------------------------------------

    def acquire(self) -> float:
        """Block until one request may be sent; return when (this budget's clock), for ``sent_at``."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._reserve(now)
                generation = self._pause_generation
            if wait > 0:
                self._sleep(wait)
            with self._lock:
                self._waited += max(wait, 0.0)
                # A Retry-After pause announced while we slept applies to us too: queue again behind it.
                now = self._clock()
                if generation == self._pause_generation or self._paused_until <= now:
                    self._acquired += 1
                    return now

    def _tolerance(self) -> float:
        # Burst tolerance: how far ahead of the schedule a request may go (capacity - 1 intervals).
        return max(0.0, self._burst_seconds - 1.0 / self._rate)

    def _reserve(self, now: float) -> float:
        self._reserved += 1
        interval = 1.0 / self._rate
        tolerance = self._tolerance()
        start = max(now, self._paused_until)
        tat = max(self._tat, start)
        send_at = max(start, tat - tolerance)
        self._tat = tat + interval
        wait = send_at - now
        # Float noise (0.1 added ten times is not 1.0) must not turn a free slot into a tiny sleep.
        return wait if wait > 1e-9 else 0.0

    def _account(self, now: float) -> None:
        # The pace allowed ``rate`` slots per second since the last account (call before the rate changes).
        self._allowed += self._rate * max(0.0, now - self._allowed_at)
        self._allowed_at = max(self._allowed_at, now)

    def on_throttled(self, retry_after: float | None, sent_at: float | None = None) -> None:
        """Report a 429: a long Retry-After pauses everybody; otherwise lower the rate (see module doc).

        ``sent_at`` is when the refused request was sent (what ``acquire`` returned); None: now.
        """
        with self._lock:
            self._throttle(retry_after, sent_at)
            line = self._episode_begins(retry_after)
        if line is not None and self._report is not None:
            self._report(logging.WARNING, line)

    def _episode_begins(self, retry_after: float | None) -> str | None:
        # The WARN line of a new episode (None inside one): the first 429 after a quiet time.
        now = self._clock()
        self._episode_last = now
        self._episode_throttled += 1
        if self._episode_start is not None:
            return None
        self._episode_start = now
        self._episode_throttled = 1
        if retry_after is not None and retry_after > self._pause_threshold:
            return (f"CrowdTwist is throttling (HTTP 429, Retry-After {retry_after:,.0f} s): every request "
                    f"waits until then, then goes on at {self._rate * 60:,.0f}/min of {self._max * 60:,.0f}/min.")
        return (f"CrowdTwist is throttling (HTTP 429): requests slowed to {self._rate * 60:,.0f}/min of "
                f"{self._max * 60:,.0f}/min; the sync goes on at the rate CrowdTwist accepts.")

    def _throttle(self, retry_after: float | None, sent_at: float | None) -> None:
        now = self._clock()
        self._account(now)
        self._throttled += 1
        self._last_adjust = now
        if retry_after is not None and retry_after > self._pause_threshold:
            self._pauses += 1
            self._pause_generation += 1
            self._paused_until = max(self._paused_until, now + retry_after)
            # No burst right after the pause: the first request goes at its end, then paced.
            self._tat = max(self._tat, self._paused_until + self._tolerance())
            return
        if self._last_cut is not None and now - self._last_cut < self._cut_cooldown:
            # Same congestion event: the other requests that were already in flight.
            return
        bad = self._good  # the rate was at (or climbing back to) the good rate, which drew a 429
        good = bad * self._backoff
        accepted = self._ok_since_cut
        window = self._ok_sent_last - self._cut_sent if self._cut_sent is not None else 0.0
        refused = self._throttled - self._throttled_at_cut
        sent = self._reserved - self._reserved_at_cut
        allowed = self._allowed - self._allowed_at_cut
        saturated = (self._last_cut is not None and now - self._last_cut <= self._reveal_max
                     and refused >= self._saturated_share * (accepted + refused)
                     and sent >= self._sending_share * allowed)
        measured = window >= self._reveal_min_seconds and accepted >= self._reveal_min_answers
        if saturated and measured:
            # 429s kept coming since the last cut while we sent at our pace: the server was
            # saturated, its bucket went from empty to empty, and what it accepted in between is
            # its rate (or the share of it that the program's other clients left us). A lone 429
            # proves no such thing (a burst the server did not allow), and neither do 429s while
            # we sent less than our pace allowed (the accepted count was then our own
            # throughput), so those only back off a step.
            good = min(bad, accepted / window) * self._reveal_margin
        if not saturated or measured:
            # A new window starts at this refusal. A saturated one still too short to measure (a
            # round trip near the cool-down: few answers to requests sent since are back) stays
            # open, so the next cut measures the longer window.
            self._cut_sent = now if sent_at is None else sent_at
            self._ok_since_cut = 0
            self._ok_sent_last = self._cut_sent
        self._last_cut = now
        self._throttled_at_cut = self._throttled
        self._reserved_at_cut = self._reserved
        self._allowed_at_cut = self._allowed
        self._rate_cuts += 1
        self._good = max(self._min, good)
        self._rate = max(self._min, self._good * self._decrease_factor)
        # Forget the burst credit saved while idle: the server just said we are too fast, so the
        # next request waits one interval at the new rate.
        self._tat = max(self._tat, now + self._tolerance() + 1.0 / self._rate)

    def on_success(self, sent_at: float | None = None) -> None:
        """Report an answer that was not throttled: climb back to the good rate, then probe gently.

        ``sent_at`` is when its request was sent (what ``acquire`` returned); None: now.
        """
        with self._lock:
            now = self._clock()
            self._account(now)
            sent = now if sent_at is None else sent_at
            if self._cut_sent is None or sent >= self._cut_sent:
                # Accepted after the last cut's refusal: part of what the server revealed.
                self._ok_since_cut += 1
                self._ok_sent_last = max(self._ok_sent_last, sent)
            # At most one second of credit per answer, so one answer after a long idle gap does not
            # restore or raise the rate as if a second of traffic had gone through.
            elapsed = min(max(now - self._last_adjust, 0.0), 1.0)
            self._last_adjust = now
            if self._rate < self._good:
                climb = self._good * (1.0 - self._decrease_factor) * elapsed / self._recovery_seconds
                self._rate = min(self._good, self._rate + climb)
            elif self._rate < self._max:
                # Additive (see the module doc): the same step for every connection sharing a limit,
                # doubling every few seconds once no 429 has come for longer than a probe cycle.
                step = self._probe * min(self._max, self._probe_rate_multiple * self._rate) * elapsed
                quiet = now - self._episode_last
                if quiet > self._speedup_after:
                    step *= 2.0 ** min((quiet - self._speedup_after) / self._speedup_doubling, 20.0)
                self._rate = self._good = min(self._max, self._rate + step)
            line = self._episode_ends(now)
        if line is not None and self._report is not None:
            self._report(logging.INFO, line)

    def _episode_ends(self, now: float) -> str | None:
        # The INFO line that closes an episode: no 429 for quiet_seconds and the rate back at its good rate.
        if (self._episode_start is None or now - self._episode_last < self._quiet
                or self._rate < self._good or now < self._paused_until):
            return None
        lasted = self._episode_last - self._episode_start
        line = (f"CrowdTwist throttling is over (no HTTP 429 for {self._quiet:,.0f} s): requests paced at "
                f"{self._rate * 60:,.0f}/min of {self._max * 60:,.0f}/min; {self._episode_throttled:,} "
                f"answers were HTTP 429 over {lasted:,.0f} s.")
        self._episode_start = None
        self._episode_throttled = 0
        return line
