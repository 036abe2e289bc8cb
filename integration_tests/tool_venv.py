"""A third-party Python tool in a virtualenv of its own, cached under the repository root.

Some integration tests drive real Airbyte tools (source-faker, PyAirbyte) whose dependencies
conflict with ours (they pin other airbyte-cdk versions), so each lives in its own venv
(``.venv-faker/``, ``.venv-pyairbyte/``; git-ignored, removed by ``make distclean``). A venv is
reused when its stamp names the pinned requirement and the tool still answers ``probe``, and is
rebuilt from scratch otherwise. They live in the checkout, or in the directory that the environment
variable ``CROWDTWIST_TOOL_VENVS`` names, so that several clones share one copy (about 1.1 GB).

    report = ensure_tool_venv(ROOT / ".venv-x", "pkg==1.2.3", "x", probe=lambda exe: ...)
    # raises ToolUnavailable (carry its message to a pytest skip)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_STAMP = ".installed"
TOOL_VENVS_ENV = "CROWDTWIST_TOOL_VENVS"
# The ceiling per step (venv creation, pip install) leaves room for a slow index without letting a
# hung one block the test run forever. Measured installs take 30 to 80 s on this 2-core machine.
INSTALL_TIMEOUT_SECONDS = 480


class ToolUnavailable(Exception):
    """The tool could not be installed or started; the message says why (for a pytest skip)."""


@dataclass(frozen=True)
class InstallReport:
    """Where the tool is and how long getting it took (0 when the cached venv was reused)."""

    executable: Path
    reused: bool
    seconds: float


def tool_venv_root(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the tool venvs live: ``$CROWDTWIST_TOOL_VENVS`` when set (shared by clones), else the checkout."""
    shared = environ.get(TOOL_VENVS_ENV, "").strip()
    return Path(shared).expanduser().resolve() if shared else ROOT


def venv_bin(venv: Path, name: str) -> Path:
    """The path of executable ``name`` inside ``venv``."""
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _last_line(stderr: str, stdout: str) -> str:
    # pip's failure is the last line of stderr ("No matching distribution found for ..."); this
    # machine's pip also prints "Location ... is ignored" warnings, which say nothing about it.
    for text in (stderr, stdout):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        meaningful = [line for line in lines if not line.startswith(("WARNING: Location", "Looking in "))]
        if meaningful:
            return meaningful[-1]
    return "(pip printed nothing)"


def ensure_tool_venv(
    venv: Path,
    requirement: str,
    executable_name: str,
    probe: Callable[[Path], bool],
    *,
    probe_description: str = "",
    timeout: float = INSTALL_TIMEOUT_SECONDS,
) -> InstallReport:
    """Executable ``executable_name`` of a working venv at ``venv`` holding ``requirement``.

    ``probe(executable)`` says whether an installed tool works (e.g. ``source-faker spec`` answers);
    ``probe_description`` names that check in the failure message.
    Raises `ToolUnavailable` naming the requirement and pip's last error line when the install
    fails (typically: no package registry reachable).
    """
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / f"{venv.name}.lock"
    executable = venv_bin(venv, executable_name)
    # One installer at a time (two pytest processes in the same checkout would otherwise both rebuild).
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = venv / _STAMP
        if stamp.exists() and stamp.read_text().strip() == requirement and probe(executable):
            return InstallReport(executable, reused=True, seconds=0.0)
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv_bin(venv, "python")), "-m", "pip", "install", "--progress-bar", "off", requirement],
        ]
        for step in steps:
            try:
                out = subprocess.run(step, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                shutil.rmtree(venv, ignore_errors=True)
                raise ToolUnavailable(f"installing {requirement} took more than {timeout:.0f} s") from None
            if out.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise ToolUnavailable(
                    f"cannot install {requirement} (is a package registry reachable?): "
                    f"{_last_line(out.stderr, out.stdout)}"
                )
        if not probe(executable):
            what = probe_description or f"{executable_name} does not start"
            raise ToolUnavailable(f"{requirement} installed, but {what}")
        stamp.write_text(requirement + "\n")
        return InstallReport(executable, reused=False, seconds=time.monotonic() - started)
