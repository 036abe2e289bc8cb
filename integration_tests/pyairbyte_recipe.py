"""The PyAirbyte recipe of docs/crowdtwist.md ("Using PyAirbyte"), run by test_pyairbyte.py.

Runs with the python of ``.venv-pyairbyte/`` (PyAirbyte and this connector cannot share a venv:
they pin different airbyte-cdk versions), so it imports nothing from this repository. Usage:

    .venv-pyairbyte/bin/python pyairbyte_recipe.py PLAN.json

PLAN.json: ``faker_executable``, ``faker_config`` (dict), ``destination_executable``,
``destination_config_path`` (the connector config, secrets included, read from a file so they never
appear on a command line), ``state_cache_dir``, ``members_url`` (the sandbox's admin list of members,
to count them between steps). Steps:

1. ``check``: ``destination.check()``.
2. ``overwrite``: ``write(..., write_strategy=WriteStrategy.REPLACE)``: PyAirbyte sends
   ``overwrite``, which the connector refuses; the step records the exception class.
3. ``first``: the documented recipe, ``write(source, cache=False, state_cache=<DuckDB cache>)``
   with the default strategy (AUTO).
4. ``second``: the same call again; the source resumes from the state the destination confirmed.

Prints one JSON line (``SUMMARY {...}``) on stdout: per step, the records PyAirbyte delivered and
confirmed, the stored state, the members in the sandbox, and any error class.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import airbyte as ab
from airbyte.exceptions import AirbyteConnectorWriteError
from airbyte.strategies import WriteStrategy
from airbyte.version import get_version


def _members(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as response:  # the sandbox on 127.0.0.1
        return len(json.load(response))


def _outcome(result: Any, members_url: str, started: float) -> dict[str, Any]:
    # processed_records is public: the records delivered to the destination, rejected ones included.
    # The confirmed count (the sum of destinationStats.recordCount over the states the destination
    # echoed) is only on the private progress tracker; read it defensively.
    tracker = getattr(result, "_progress_tracker", None)
    confirmed = dict(getattr(tracker, "destination_stream_records_confirmed", {}) or {})
    states = [s.model_dump(mode="json") for s in result.get_state_provider().stream_state_artifacts]
    return {
        "processed_records": result.processed_records,
        "confirmed_records": confirmed,
        "stored_states": states,
        "members": _members(members_url),
        "seconds": round(time.monotonic() - started, 2),
    }


def main(plan_path: str) -> None:
    """Run the steps of the module docstring and print the summary."""
    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    summary: dict[str, Any] = {"pyairbyte_version": get_version()}

    source = ab.get_source(
        "source-faker",
        config=plan["faker_config"],
        streams=["users"],
        local_executable=plan["faker_executable"],
    )
    destination = ab.get_destination(
        "destination-crowdtwist",
        config=json.loads(Path(plan["destination_config_path"]).read_text(encoding="utf-8")),
        local_executable=plan["destination_executable"],
    )

    started = time.monotonic()
    destination.check()
    summary["check"] = {"ok": True, "seconds": round(time.monotonic() - started, 2)}

    started = time.monotonic()
    try:
        destination.write(source, cache=False, state_cache=False, write_strategy=WriteStrategy.REPLACE)
        summary["overwrite"] = {"error": None}
    except AirbyteConnectorWriteError as exc:
        summary["overwrite"] = {"error": type(exc).__name__}
    summary["overwrite"].update(members=_members(plan["members_url"]), seconds=round(time.monotonic() - started, 2))

    state_cache = ab.new_local_cache("crowdtwist_state", cache_dir=plan["state_cache_dir"])
    for step in ("first", "second"):
        started = time.monotonic()
        result = destination.write(source, cache=False, state_cache=state_cache)
        summary[step] = _outcome(result, plan["members_url"], started)

    print("SUMMARY " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
