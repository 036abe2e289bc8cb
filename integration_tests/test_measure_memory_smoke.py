"""Smoke test of ``scripts/measure_memory.py``: it runs a whole ``write`` for both objects on a few rows.

Its instant client must keep up with what wiring and the session read of a client (the script broke
once when they started to read ``wait`` and ``stats``); no memory figure is asserted here (``make perf``
runs the measurements themselves).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.perf

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "measure_memory.py"


@pytest.mark.parametrize(("args", "expected"), [
    (["--object", "activity_credit", "--members", "50"], ["credited: 300", "run 1: object=activity_credit rows=300"]),
    (["--object", "user_profile", "--resync"], [
        "updated: 300", "run 1: object=user_profile rows=300", "unchanged: 300", "run 2: object=user_profile rows=300",
    ]),
], ids=["activity_credit", "user_profile"])
def test_the_memory_script_runs_a_whole_write(args: list[str], expected: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--rows", "300", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for text in expected:
        assert text in proc.stdout, text
