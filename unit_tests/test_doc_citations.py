"""Every Markdown file a comment or docstring cites must exist in the repository, with the cited section.

Code used to cite notes that lived outside the repository; a reader could not follow them. A
citation is a file name ending in ``.md`` in a comment or a docstring (string literals that are test data
are not citations). It resolves against the citing file's folder, then the repository root. When
``§`` section numbers follow it (``docs/crowdtwist-api-notes.md §2.5-2.7, §3``), each number must be
a numbered heading of that file.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Not the project's own files: virtualenvs, build output, caches.
SKIPPED_DIRS = frozenset({".venv", "venv", ".git", "build", "dist", "__pycache__", ".bench",
                          ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"})

# A path ending in .md, then optional sections: "§1.6", "§2.5/§2.6", "§2.5-2.7, §3" (a range names both ends).
CITATION_RE = re.compile(r"(?<![\w./-])((?:\.\.?/)*\w[\w./-]*\.md)\b"
                         r"((?:\s*[,;/]?\s*§\s*\d+(?:\.\d+)*(?:\s*-\s*\d+(?:\.\d+)*)?)*)")
SECTION_RE = re.compile(r"\d+(?:\.\d+)*")
HEADING_RE = re.compile(r"^#+\s+(\d+(?:\.\d+)*)[.\s]", re.MULTILINE)


def _python_files(root: Path) -> Iterator[Path]:
    # The repository's own files: git knows them; local virtualenvs (.venv, .venv-faker) are not ours.
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--", "*.py"], cwd=root, capture_output=True, check=True, timeout=30
        ).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        listed = []
    if listed and listed != [""]:
        yield from (root / name for name in sorted(listed) if name and (root / name).exists())
        return
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in parts[:-1]):
            continue
        yield path


def _prose(source: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of every comment and docstring of a module."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                first = body[0].lineno
                for offset, line in enumerate(body[0].value.value.splitlines()):
                    yield first + offset, line


def citations(source: str) -> list[tuple[int, str, list[str]]]:
    """(line, cited .md path, cited section numbers) for each citation in comments and docstrings."""
    found = []
    for line, text in _prose(source):
        for match in CITATION_RE.finditer(text):
            found.append((line, match.group(1), SECTION_RE.findall(match.group(2))))
    return sorted(found, key=lambda item: item[0])  # stable: same-line citations keep their order


def _headings(doc: Path) -> set[str]:
    return set(HEADING_RE.findall(doc.read_text(encoding="utf-8")))


def problems(py_file: Path, root: Path) -> list[str]:
    """One line per citation of ``py_file`` whose file or section does not exist under ``root``."""
    out = []
    rel = py_file.relative_to(root)
    for line, cited, sections in citations(py_file.read_text(encoding="utf-8")):
        candidates = [(py_file.parent / cited).resolve(), (root / cited).resolve()]
        found = next((c for c in candidates if c.is_file() and c.is_relative_to(root)), None)
        if found is None:
            out.append(f"{rel}:{line}: cites {cited}, which is not a file of the repository")
            continue
        missing = [s for s in sections if s not in _headings(found)]
        if missing:
            out.append(f"{rel}:{line}: cites {cited} section(s) {', '.join(missing)}, which it does not have")
    return out


def test_python_files_cite_only_markdown_files_and_sections_of_the_repository() -> None:
    found = [p for path in _python_files(ROOT) for p in problems(path, ROOT)]
    assert found == []


def test_the_checker_finds_a_citation_of_a_missing_file_or_section(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("# Notes\n\n## 2. Users\n\n### 2.5 Fields\n\n## 3. Credits\n")
    module = tmp_path / "pkg" / "mod.py"
    module.parent.mkdir()
    module.write_text(
        '"""Rules from docs/notes.md §2.5-2.6, §3 and from crowdtwist-api.md §1.3."""\n'
        "\n"
        "# Known fields (docs/notes.md §2.5).\n"
        'DATA = "docs/absent.md"  # test data in a string literal is not a citation\n'
        "\n"
        "\n"
        "def f() -> None:\n"
        '    """See ../docs/notes.md §4."""\n',
        encoding="utf-8",
    )
    assert problems(module, tmp_path) == [
        "pkg/mod.py:1: cites docs/notes.md section(s) 2.6, which it does not have",
        "pkg/mod.py:1: cites crowdtwist-api.md, which is not a file of the repository",
        "pkg/mod.py:8: cites ../docs/notes.md section(s) 4, which it does not have",
    ]


def test_citation_parsing_reads_section_lists() -> None:
    source = "# (docs/a.md §2.6, §2.7, §3): texts; docs/b.md §1.6; README.md\n"
    assert citations(source) == [
        (1, "docs/a.md", ["2.6", "2.7", "3"]),
        (1, "docs/b.md", ["1.6"]),
        (1, "README.md", []),
    ]
