"""The one Dockerfile reader of the tests: instructions with continuations joined, comments dropped,
and the one ``.dockerignore`` matcher (what Docker leaves out of the build context).

unit_tests/test_packaging.py checks what the instructions say; integration_tests/test_install.py
replays the COPY and RUN steps. Both read the files through this module so they cannot disagree
about what a step is or which file reaches the image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


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


def dockerignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    """The patterns of a ``.dockerignore`` file, in order (blank and ``#`` lines dropped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore matching.

    Anchored at the context root, `*` and `?` stay within one path segment, `**` spans any number of
    directories.
    """
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            char = pattern[i]
            out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
            i += 1
    return re.compile(out + r"\Z")


def dockerignored(rel: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``rel`` (posix, relative to the context) out of the build context.

    A path is left out when it or one of its parent directories matches; a later ``!pattern``
    takes it back.
    """
    parts = PurePosixPath(rel).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern[1:] if negated else pattern)
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored
