"""Peak RSS of a whole ``write`` over many rows, with an instant fake CrowdTwist.

    .venv/bin/python scripts/measure_memory.py --object activity_credit --rows 1000000 --members 200000
    .venv/bin/python scripts/measure_memory.py --object user_profile --rows 1000000

Drives ``DestinationCrowdtwist().write`` (pipeline, report, writer) in this process, with the client
replaced by one whose endpoints answer at once, so the figure is the connector's own memory, with no
server in the process. A STATE follows every 10,000 rows. Prints rows, peak RSS and rows/s.

The instant client is a ``CrowdTwistClient`` with only its endpoint calls replaced: what a sync reads
of the client besides them (the flow control, ``stats``, ``wait``, ``stop``, ``abort``, ``close``) is
the real client's, so it cannot fall behind what wiring and the session use (integration_tests/test_measure_memory_smoke.py
runs this script with a few rows). ``tests_support.FakeApi`` does not fit here: it keeps every call it
was asked, which a memory measurement of a million rows would mostly measure.

* ``activity_credit``: default ``every_row`` verification (empty history, every credit awarded);
  row i credits member ``i % members``.
* ``user_profile``: an upsert of ``rows`` distinct members through a member index
  (``member_index_path`` in a temporary directory), which ends holding one entry per member; with
  ``--resync`` the same rows are sent a second time, in the same process, against the full index
  (every row unchanged, no request).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

from airbyte_cdk.models import AirbyteMessage
from airbyte_cdk.models.airbyte_protocol_serializers import ConfiguredAirbyteCatalogSerializer

from destination_crowdtwist import DestinationCrowdtwist, wiring
from destination_crowdtwist.api.client import CrowdTwistClient
from destination_crowdtwist.api.flow import FlowControl
from destination_crowdtwist.api.response import ApiResponse
from destination_crowdtwist.api.signing import ApiKeyAuth
from destination_crowdtwist.cdk_adapter import load_message

#: Worker threads, as the old fixed pool had (no gate: nothing is ever in flight).
WORKERS = 20


class InstantFlow(FlowControl):
    """The flow control, unpaced and ungated, asking for :data:`WORKERS` workers."""

    def workers_wanted(self) -> int:
        """A fixed pool: no request goes through the gate that would size it."""
        return WORKERS


class InstantCrowdTwist(CrowdTwistClient):
    """The real client with its endpoints answered at once: every member exists after its first write."""

    def __init__(self) -> None:
        super().__init__("https://api1.crowdtwist.com", ApiKeyAuth("k"), flow=InstantFlow())
        self._next_id = 0

    def list_activities(self) -> list[dict[str, Any]]:
        """One active activity."""
        return [{"id": "1001", "num_points": 10}]

    def activity_history(
        self, user_id: str, id_type: str, date_start: int, date_end: int, *, page: int | None = None,
        page_size: int | None = None,
    ) -> ApiResponse:
        """An empty history (nothing credited before)."""
        return ApiResponse(200, [], {})

    def credit_activity(self, user_id: str, id_type: str, payload: Mapping[str, Any]) -> ApiResponse:
        """Awarded."""
        return ApiResponse(200, {"awarded": True}, {})

    def create_user(self, payload: Mapping[str, Any]) -> ApiResponse:
        """A new member."""
        self._next_id += 1
        return ApiResponse(200, {"id": self._next_id, **payload}, {}, endpoint="POST /v2/users")

    def update_user(self, user_id: str, id_type: str, payload: Mapping[str, Any]) -> ApiResponse:
        """The updated member."""
        return ApiResponse(200, {"id": user_id, **payload}, {}, endpoint="PUT /v2/users/{user_id}")

    def get_user(self, user_id: str, id_type: str) -> ApiResponse:
        """The member."""
        return ApiResponse(200, {"id": user_id}, {}, endpoint="GET /v2/users/{user_id}")


def messages(stream: str, rows: int, row: Any) -> Iterator[AirbyteMessage]:
    """``rows`` records of ``stream`` (``row(i)`` is the data of the i-th), a STATE every 10,000."""
    for i in range(rows):
        yield load_message({"type": "RECORD", "record": {"stream": stream, "emitted_at": 0, "data": row(i)}})
        if i % 10_000 == 9_999:
            descriptor = {"stream_descriptor": {"name": stream}, "stream_state": {"n": i}}
            yield load_message({"type": "STATE", "state": {"type": "STREAM", "id": i, "stream": descriptor}})


def catalog(stream: str, mode: str) -> Any:
    return ConfiguredAirbyteCatalogSerializer.load({"streams": [{
        "stream": {"name": stream, "json_schema": {}, "supported_sync_modes": ["incremental"]},
        "sync_mode": "incremental",
        "destination_sync_mode": mode,
    }]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--object", choices=("activity_credit", "user_profile"), default="activity_credit")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=200_000, help="activity_credit: distinct members")
    parser.add_argument("--resync", action="store_true", help="user_profile: send the same rows a second time")
    args = parser.parse_args()
    config: dict[str, Any] = {
        "api_base_url": "https://api1.crowdtwist.com", "credentials": {"api_key": "k"},
        "object_type": args.object, "award_queue_delay_seconds": 0, "progress_interval_seconds": 0,
    }
    with (
        tempfile.TemporaryDirectory(prefix="measure-memory-") as scratch,
        mock.patch.object(wiring, "client_from_config", side_effect=lambda *args, **kwargs: InstantCrowdTwist()),
    ):
        if args.object == "activity_credit":
            def credit(i: int) -> dict[str, Any]:
                return {"user_id": f"member{i % args.members}@example.com", "activity_id": "1001", "event_id": f"evt-{i}"}
            runs = [("credits", "append", credit)]
        else:
            config["member_index_path"] = str(Path(scratch) / "member_index.sqlite")

            def profile(i: int) -> dict[str, Any]:
                return {"user_id": f"member{i}@example.com", "first_name": "Ann", "last_name": f"Lee{i}"}
            runs = [("users", "append_dedup", profile)] * (2 if args.resync else 1)
        for number, (stream, mode, row) in enumerate(runs, 1):
            started = time.perf_counter()
            states = sum(1 for _ in DestinationCrowdtwist().write(config, catalog(stream, mode),
                                                                  messages(stream, args.rows, row)))
            elapsed = time.perf_counter() - started
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
            print(f"run {number}: object={args.object} rows={args.rows} states={states} "
                  f"peak_rss={peak_mib:.0f} MiB (so far, this process) {args.rows / elapsed:.0f} rows/s", flush=True)


if __name__ == "__main__":
    main()
