"""The one Dockerfile reader of the tests: instructions with continuations joined, comments dropped.

unit_tests/test_packaging.py checks what the instructions say; integration_tests/test_install.py
replays the COPY and RUN steps. Both read the file through this module so they cannot disagree
about what a step is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Step:
    """One Dockerfile instruction: its upper-cased name and the rest of the (joined) line."""

    instruction: str
    args: str


def parse_dockerfile(text: str) -> list[Step]:
    """The instructions of a Dockerfile's text, in order.

    A trailing backslash continues a line; blank and ``#`` lines are skipped between instructions.
    A continuation that is never finished is an error (Docker refuses such a file too).
    """
    steps: list[Step] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        instruction, _, args = (pending + stripped).partition(" ")
        steps.append(Step(instruction.upper(), args.strip()))
        pending = ""
    if pending:
        raise ValueError("the Dockerfile ends in a line continuation")
    return steps


def dockerfile_steps(path: Path = DOCKERFILE) -> list[Step]:
    """The instructions of the repository's Dockerfile (or of ``path``)."""
    return parse_dockerfile(path.read_text(encoding="utf-8"))


def instruction_args(instruction: str, path: Path = DOCKERFILE) -> list[str]:
    """The arguments of every ``instruction`` (e.g. ``"COPY"``), in file order."""
    return [step.args for step in dockerfile_steps(path) if step.instruction == instruction.upper()]
