"""What one sync's state store did (``state/store.py``): its counters, and the two log lines they make.

The operator reads the start's line (what was read from the bucket, or that nothing was saved yet)
and the end's line (what was saved, for how many flushes); the bench reads the counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StoreStats:
    """What the store did, for the closing log line and the bench."""

    read_objects: int = 0
    read_bytes: int = 0
    read_seconds: float = 0.0
    download_seconds: float = 0.0
    members: dict[str, int] = field(default_factory=dict)
    credits: int = 0
    uploads: int = 0  # delta objects written
    upload_bytes: int = 0
    flushes: int = 0  # flush() calls that waited for an upload (group commit: many share one)
    upload_failures: int = 0
    compactions: int = 0
    merged_deltas: int = 0  # this sync's own deltas merged into one at close
    compaction_races: int = 0

    def opened(self, *, copies: int, size: int, seconds: float, credits: int, members: dict[str, int]) -> None:
        """What the start read."""
        self.read_objects, self.read_bytes, self.read_seconds = copies, size, seconds
        self.credits, self.members = credits, members

    def opened_line(self, where: str, untrusted: int) -> str:
        """The start's log line: what was read, or that nothing was saved yet."""
        if not self.read_objects and not untrusted:
            return (
                f"Sync state: nothing saved yet in {where} (a first sync of this program, or the state was "
                "reset); every row is handled as if never seen, and this sync's state is saved there."
            )
        members = ", ".join(f"{count} members by {id_type}" for id_type, count in self.members.items())
        left_out = f" ({untrusted} untrusted objects left out)" if untrusted else ""
        return (
            f"Sync state: read {self.read_objects} objects ({self.read_bytes / 1e6:.1f} MB) from {where} "
            f"in {self.read_seconds:.1f} s{left_out}: {members or 'no members'}, {self.credits} ledger keys."
        )

    def closing_line(self) -> str:
        """The end's log line: what was saved, for how many flushes."""
        return (
            f"Sync state: saved {self.uploads} delta objects ({self.upload_bytes / 1e6:.2f} MB) for "
            f"{self.flushes} flushes, {self.compactions} compactions; {self.merged_deltas} of them merged "
            "into one a channel."
        )
