"""The contract between the sync report and a place that keeps rejected rows (a reject sink).

A sink receives every rejected row as it settles and must make what it holds durable in
:meth:`RejectSink.flush`, which the destination calls before it echoes the states that cover those
rows (the checkpoint contract: a state is echoed only when its rejected rows are stored). A sink
that cannot store raises from ``flush``; the sync then stops without echoing those states.

``add`` runs under the pipeline's settle lock, so it only buffers: nothing there may wait for the
network (an upload there would stall every worker). ``flush`` and ``wait_for_room`` run outside every
lock of the pipeline and the report, while other rows keep settling, so a sink guards its own state.

Sinks get the row unmasked; each decides what it may keep (the local file masks PII unless asked
not to; the user's bucket keeps the data as received, because fixing rows needs it).
"""

from __future__ import annotations

from typing import Protocol

from destination_crowdtwist.writers.base import Outcome, Row


class RejectSink(Protocol):
    """A place that stores rejected rows (``rejects/local_file.py``, ``rejects/s3_sink.py``)."""

    def add(self, row: Row, outcome: Outcome) -> None:
        """Take one rejected row (in settle order, under the settle lock): buffer it, never wait.

        Raises the sink's failure once storing failed (the row is then not settled: the sync stops).
        """

    def add_change(self, row: Row, outcome: Outcome) -> None:
        """Take one dry-run row with the fields it would change (sinks that keep only rejects ignore it)."""

    def wait_for_room(self) -> None:
        """Wait (outside every lock) while the sink holds more rows than its memory bound allows.

        Called by the thread that settled a row, after the settle; returns at once after a failure
        (``add`` and ``flush`` raise it).
        """

    def flush(self) -> None:
        """Make every row added so far durable; raise if that is impossible (rows may be added meanwhile)."""

    def close(self) -> None:
        """Flush what is left and release resources (end of the sync)."""
