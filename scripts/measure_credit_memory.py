"""Peak RSS of a whole Activity Credit ``write`` over many rows, with an instant fake CrowdTwist.

    .venv/bin/python scripts/measure_credit_memory.py --rows 1000000 --members 200000

Drives ``DestinationCrowdtwist().write`` (pipeline, report, writer, default ``every_row``
verification) in this process, with the client replaced by a fake that answers at once (empty
history, every credit awarded), so the figure is the connector's own memory, with no server in the
process. A STATE follows every 10,000 rows. Prints rows, peak RSS and rows/s.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator
from typing import Any

from airbyte_cdk.models import AirbyteMessage
from airbyte_cdk.models.airbyte_protocol_serializers import ConfiguredAirbyteCatalogSerializer

from destination_crowdtwist import DestinationCrowdtwist, destination
from destination_crowdtwist.api.client import ApiResponse
from destination_crowdtwist.sync.protocol import load_message


class InstantCrowdTwist:
    """Just what an Activity Credit sync calls, answered at once."""

    def list_activities(self) -> list[dict[str, Any]]:
        return [{"id": "1001", "num_points": 10}]

    def activity_history(self, *args: Any) -> ApiResponse:
        return ApiResponse(200, [], {})

    def credit_activity(self, *args: Any) -> ApiResponse:
        return ApiResponse(200, {"awarded": True}, {})

    def request_totals(self) -> tuple[int, int]:
        return (0, 0)

    def close(self) -> None:
        pass


def messages(rows: int, members: int) -> Iterator[AirbyteMessage]:
    for i in range(rows):
        data = {"user_id": f"member{i % members}@example.com", "activity_id": "1001", "event_id": f"evt-{i}"}
        yield load_message({"type": "RECORD", "record": {"stream": "credits", "emitted_at": 0, "data": data}})
        if i % 10_000 == 9_999:
            descriptor = {"stream_descriptor": {"name": "credits"}, "stream_state": {"n": i}}
            yield load_message({"type": "STATE", "state": {"type": "STREAM", "id": i, "stream": descriptor}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=200_000)
    args = parser.parse_args()
    destination.client_from_config = lambda cfg, **kw: InstantCrowdTwist()  # type: ignore[assignment]
    catalog = ConfiguredAirbyteCatalogSerializer.load({"streams": [{
        "stream": {"name": "credits", "json_schema": {}, "supported_sync_modes": ["incremental"]},
        "sync_mode": "incremental",
        "destination_sync_mode": "append",
    }]})
    config = {
        "api_base_url": "https://api1.crowdtwist.com", "credentials": {"api_key": "k"},
        "object_type": "activity_credit", "award_queue_delay_seconds": 0, "progress_interval_seconds": 0,
    }
    started = time.perf_counter()
    states = sum(1 for _ in DestinationCrowdtwist().write(config, catalog, messages(args.rows, args.members)))
    elapsed = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"rows={args.rows} members={args.members} states={states} peak_rss={peak_mib:.0f} MiB "
          f"{args.rows / elapsed:.0f} rows/s")


if __name__ == "__main__":
    main()
