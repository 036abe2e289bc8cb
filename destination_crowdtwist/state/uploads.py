"""When the sync state's changes are uploaded: at an interval, and on demand with group commit.

The store (``state/store.py``) uploads what its writers changed as one delta object per channel and
upload. Two things ask for uploads:

* the **interval** (a sync killed after an hour loses at most the last interval's savings), and
* **flushes**: the member index's write-ahead rule (``writers/member_index.py``, rule 2) makes every
  changing request wait until the member's cleared fingerprint is in the bucket, and the state gate
  (``wiring.state_gate``) makes a state wait until the ledger entries it covers are.

A re-sync that changes 2% of 20,000 members asks for 400 flushes within seconds; one upload each
(a small PUT, and a delta object that the next compaction merges and deletes) is most of that
sync's CPU. :class:`UploadScheduler` runs every upload on one thread and lets flushes share them
(a *group commit*): a flush that finds no upload running wakes the thread, which waits ``gather``
seconds for more flushes to arrive, then takes everything recorded so far in one upload; a flush
arriving while an upload runs is served by the next one, which starts as soon as that one ends.
A flush that holds up the whole sync (the state gate: no state is echoed meanwhile) asks for no
gathering (``gather=False``): it ends the window of an upload being gathered, and shares it.

**The contract of a flush** (``SyncStateStore.flush``) is kept exactly: a waiter returns True only
when its caller's ``covered()`` holds (every change recorded before the call is in the bucket: the
store compares journal marks), False when an upload that *started after the call* failed (that
upload covered the caller's changes: every waiter it covered learns of the failure, none waits for
another try), or when ``timeout`` passed. An upload that started before the call may have read the
marks before the caller's change, so its failure says nothing about that change, and its success
counts only through ``covered()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("airbyte")


class UploadScheduler:
    """One thread running ``upload()`` every ``interval`` seconds and whenever a flush waits for one.

    ``upload()`` uploads everything recorded so far and returns whether it all reached the bucket;
    it reads what to upload only after it is called. ``gather``: seconds an on-demand upload waits
    for more flushes to join it. ``pause(seconds)``: how that wait is made (tests inject their own;
    by default it ends early when the scheduler stops or a flush asks for no gathering).
    """

    def __init__(
        self, upload: Callable[[], bool], *, interval: float, gather: float = 0.0,
        pause: Callable[[float], object] | None = None, name: str = "sync-state-uploads",
    ) -> None:
        self._upload = upload
        self._interval = interval
        self._gather = max(0.0, gather)
        self._hurry = threading.Event()  # set: stop gathering (the scheduler stops, or a flush cannot wait)
        self._pause = pause if pause is not None else self._hurry.wait
        self._cond = threading.Condition()
        self._demand = False  # a flush waits for an upload that has not started yet
        self._started = 0  # uploads started so far (their numbers)
        self._failed = 0  # the number of the latest upload that failed
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread (once)."""
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the thread after the upload it is running; waiters then get None (upload yourselves)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._hurry.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def wait(self, covered: Callable[[], bool], timeout: float, *, gather: bool = True) -> bool | None:
        """Wait until ``covered()`` holds (True), an upload covering the call failed or ``timeout``
        passed (False); None when the scheduler is stopped (the caller then uploads itself).

        ``covered`` must read the store's state afresh each time; the caller took its target before
        calling (so every upload started after this call reads marks at least as new). ``gather``:
        False when the caller must not wait for other flushes (the upload it needs starts at once).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            ticket = self._started  # uploads numbered above it started after this call
            while True:
                if covered():
                    return True
                if self._failed > ticket:
                    return False
                if self._stopping or not self._thread.is_alive():
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if not gather:
                    self._hurry.set()
                if not self._demand:
                    self._demand = True
                    self._cond.notify_all()
                self._cond.wait(remaining)

    def _run(self) -> None:
        due = time.monotonic() + self._interval
        while True:
            with self._cond:
                while not self._demand and not self._stopping:
                    remaining = due - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._stopping:
                    return
                demanded = self._demand
            if demanded and self._gather > 0:
                # Group commit: the flushes arriving meanwhile share this upload (the first one waits
                # this much longer; a re-sync's changing rows wait a round trip for CrowdTwist anyway).
                self._pause(self._gather)
            with self._cond:
                if self._stopping:
                    return
                self._hurry.clear()  # a flush that cannot wait, arriving from now on, sets it again
                self._demand = False
                self._started += 1
                number = self._started
            try:
                ok = self._upload()
            except Exception:
                logger.exception("Sync state: an upload failed unexpectedly")
                ok = False
            with self._cond:
                if not ok:
                    self._failed = number
                self._cond.notify_all()
            due = time.monotonic() + self._interval
