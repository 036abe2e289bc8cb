"""Dry run as a writer wrapper: the real writer's checks, its would-be outcomes, no write.

``wiring.py`` wraps each writer in :class:`DryRunWriter` when the config says ``dry_run``; nothing
else in ``writers/`` knows about dry runs. The wrapped writer prepares every row as in a real sync
(mapping, validation, duplicates, the delete guardrail's count), and ``apply`` answers with its
:meth:`Previewable.preview`: the outcome the row would have (``would_create``, ``would_update`` with
the fields that would change, ``would_credit``, ``would_deactivate``, ``would_erase``, or the
rejection CrowdTwist would give), found by reading (the member's profile), never by writing.

Where a real sync stops before a row (``StopBeforeRow``, e.g. ``max_deletes_per_sync``), a dry run
goes on with the row and says at its end where the real sync would have stopped.
"""

from __future__ import annotations

import logging
from typing import Generic, Protocol, TypeVar, cast

from destination_crowdtwist.writers.base import Outcome, Prepared, Row, StopBeforeRow, Writer

logger = logging.getLogger("airbyte")

P = TypeVar("P")


class Previewable(Writer[P], Protocol[P]):
    """A writer that can say what ``apply`` would do without doing it."""

    def start_preview(self) -> None:
        """What ``start`` does that ``prepare`` and ``preview`` need, opening no local store (a dry run
        records nothing). May raise ConfigError.
        """

    def preview(self, prepared: Prepared[P]) -> Outcome:
        """The outcome ``apply`` would have: reads what it needs, never writes (nor records locally)."""


class DryRunWriter(Generic[P]):
    """Wraps a writer for a dry run. See the module docstring."""

    def __init__(self, inner: Previewable[P]) -> None:
        self.inner = inner
        self._stopped: StopBeforeRow | None = None  # the latest stop a real sync would have made

    def start(self) -> None:
        """Start the wrapped writer without its local stores."""
        self.inner.start_preview()

    def prepare(self, row: Row) -> Prepared[P] | Outcome:
        """The wrapped writer's prepare; a row a real sync would stop before goes on, and is remembered."""
        try:
            return self.inner.prepare(row)
        except StopBeforeRow as stop:
            if stop.prepared is None:
                raise
            self._stopped = stop
            # The wrapped writer raised it from its own prepare: the row is one of its P rows.
            return cast("Prepared[P]", stop.prepared)

    def settle_at_once(self, prepared: Prepared[P]) -> Outcome | None:
        """Never: a dry run opens no member index, and every row's preview reads the member."""
        return None

    def apply(self, prepared: Prepared[P]) -> Outcome:
        """The outcome the row would have; nothing is written."""
        return self.inner.preview(prepared)

    def checkpoint(self) -> None:
        """Nothing to make durable: a dry run records nothing."""

    def finish(self) -> None:
        """Say where a real sync would have stopped, if it would have (the wrapped writer's finish follows
        up writes, e.g. queued erasures: a dry run made none).
        """
        if self._stopped is not None and self._stopped.summary:
            logger.warning(f"Dry run: {self._stopped.summary}.")

    def close(self) -> None:
        """Close the wrapped writer."""
        self.inner.close()
