"""Packaging checks: registry metadata, spec lint, Dockerfile, Makefile bootstrap, docs, CI entry point."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from airbyte_cdk.models import ConnectorSpecificationSerializer
from airbyte_cdk.test.standard_tests._spec_lint import find_secret_marking_errors

from tests_support.dockerfile import Step, dockerfile_steps, instruction_args, parse_dockerfile

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "spec.json"
PACKAGE_SPEC_LINK = ROOT / "destination_crowdtwist" / "spec.json"


def _setup_keywords() -> dict[str, Any]:
    """The literal keyword arguments of the setup() call in setup.py (parsed, not executed)."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            out: dict[str, Any] = {}
            for kw in node.keywords:
                try:
                    out[str(kw.arg)] = ast.literal_eval(kw.value)
                except ValueError:
                    out[str(kw.arg)] = None  # a name such as MAIN_REQUIREMENTS
            return out
    raise AssertionError("setup.py has no setup(...) call")


def _setup_version() -> str:
    version = _setup_keywords()["version"]
    assert isinstance(version, str)
    return version


def _docker(instruction: str) -> list[str]:
    return instruction_args(instruction)


@pytest.fixture(scope="module")
def metadata() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "metadata.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


# --- metadata.yaml -------------------------------------------------------------------------------


def test_metadata_has_every_registry_field(metadata: dict[str, Any]) -> None:
    assert metadata["metadataSpecVersion"] == "1.0"  # a string, not the float 1.0
    data = metadata["data"]
    assert data["name"] == "CrowdTwist"
    assert data["connectorType"] == "destination"
    assert data["dockerRepository"] == "destination-crowdtwist"
    assert data["githubIssueLabel"] == "destination-crowdtwist"
    assert data["license"] == "MIT"
    assert data["connectorSubtype"] == "api"
    assert data["releaseStage"] == "alpha"
    assert data["supportLevel"] == "community"
    assert data["documentationUrl"].startswith("https://")
    assert set(data["tags"]) >= {"language:python", "cdk:python"}
    assert data["allowedHosts"]["hosts"] == ["*.crowdtwist.com"]
    assert (ROOT / data["icon"]).is_file()


def test_the_image_is_not_named_in_a_namespace_users_cannot_push_to(metadata: dict[str, Any]) -> None:
    """`airbyte/` is Airbyte's namespace on Docker Hub: the image is named without a namespace, and a
    user tags it into a registry of their own (docs/deploy.md)."""
    repository = metadata["data"]["dockerRepository"]
    assert "/" not in repository and ":" not in repository, repository
    labels = [args.split("=", 1) for args in _docker("LABEL")]
    assert ["io.airbyte.name", repository] in labels
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for text in (deploy, readme):
        assert "airbyte/destination-crowdtwist" not in text


def test_metadata_loads_with_the_cdk_model_that_airbyte_cdk_image_build_reads() -> None:
    from airbyte_cdk.models.connector_metadata import ConnectorLanguage, MetadataFile

    parsed = MetadataFile.from_file(ROOT / "metadata.yaml")
    assert parsed.data.dockerRepository == "destination-crowdtwist"
    assert parsed.data.language == ConnectorLanguage.PYTHON  # picks the Python template and base image
    assert parsed.data.connectorBuildOptions is not None
    assert parsed.data.connectorBuildOptions.baseImage == _docker("FROM")[0]


def test_metadata_declares_data_activation_and_refreshes(metadata: dict[str, Any]) -> None:
    # The platform calls `discover` only for connectors that declare data activation.
    assert metadata["data"]["supportsDataActivation"] is True
    assert metadata["data"]["supportsRefreshes"] is True


def test_metadata_definition_id_is_a_uuid4(metadata: dict[str, Any]) -> None:
    raw = metadata["data"]["definitionId"]
    parsed = uuid.UUID(raw)
    assert parsed.version == 4
    assert str(parsed) == raw  # canonical lower-case, hyphenated form


def test_versions_agree_everywhere(metadata: dict[str, Any]) -> None:
    """A release bumps setup.py, metadata.yaml, the Dockerfile label and the changelog together."""
    version = _setup_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert metadata["data"]["dockerImageTag"] == version
    labels = " ".join(_docker("LABEL"))
    assert f"io.airbyte.version={version}" in labels
    assert f"io.airbyte.name={metadata['data']['dockerRepository']}" in labels
    # The User-Agent names the version too, and the changelog's newest row is this version.
    from destination_crowdtwist.api.client import USER_AGENT

    assert USER_AGENT.endswith(f"/{version}")
    changelog = (ROOT / "docs" / "crowdtwist.md").read_text(encoding="utf-8").split("## Changelog", 1)[1]
    newest = re.search(r"^\| (\d+\.\d+\.\d+) \|", changelog, re.MULTILINE)
    assert newest is not None and newest.group(1) == version


def test_base_image_equals_dockerfile_from(metadata: dict[str, Any]) -> None:
    (base,) = _docker("FROM")
    assert metadata["data"]["connectorBuildOptions"]["baseImage"] == base
    match = re.fullmatch(r"docker\.io/airbyte/python-connector-base:(4)\.(\d+)\.(\d+)@sha256:[0-9a-f]{64}", base)
    assert match, base
    # 4.1.0 or later (issue 18: 4.0.2 was behind the base image Airbyte's Python connectors use).
    assert tuple(int(part) for part in match.groups()) >= (4, 1, 0)


def test_icon_is_an_svg() -> None:
    text = (ROOT / "icon.svg").read_text(encoding="utf-8")
    assert text.lstrip().startswith("<svg")
    assert text.rstrip().endswith("</svg>")


# --- spec.json -----------------------------------------------------------------------------------


def test_package_spec_is_a_relative_symlink_to_the_top_level_spec() -> None:
    """One source of truth: the package serves the top-level spec.json through a relative link."""
    assert PACKAGE_SPEC_LINK.is_symlink()
    assert os.readlink(PACKAGE_SPEC_LINK) == "../spec.json"
    assert PACKAGE_SPEC_LINK.resolve() == SPEC_PATH.resolve()


def test_spec_and_metadata_point_to_the_same_docs_page(spec: dict[str, Any], metadata: dict[str, Any]) -> None:
    url = spec["documentationUrl"]
    assert metadata["data"]["documentationUrl"] == url
    assert url.endswith("/docs/crowdtwist.md")  # the page in this repository
    assert (ROOT / "docs" / "crowdtwist.md").is_file()


def test_spec_passes_the_cdk_secret_lint(spec: dict[str, Any]) -> None:
    assert find_secret_marking_errors(spec["connectionSpecification"]) == []


def test_spec_is_a_valid_connector_specification(spec: dict[str, Any]) -> None:
    parsed = ConnectorSpecificationSerializer.load(spec)
    assert parsed.connectionSpecification == spec["connectionSpecification"]
    modes = {mode.value for mode in parsed.supported_destination_sync_modes or []}
    # overwrite is refused: CrowdTwist cannot replace members. soft_delete removes them (delete_behaviour).
    assert modes == {"append", "append_dedup", "update", "soft_delete"}


def test_installed_console_script_prints_the_spec_file(spec: dict[str, Any]) -> None:
    script = Path(sys.executable).parent / "destination-crowdtwist"
    assert script.exists(), "run `make venv` (pip install -e '.[dev]') first"
    proc = subprocess.run(
        [str(script), "spec"], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    specs = [
        msg["spec"]
        for msg in (json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{"))
        if msg.get("type") == "SPEC"
    ]
    assert len(specs) == 1
    assert specs[0]["connectionSpecification"] == spec["connectionSpecification"]
    assert specs[0]["supported_destination_sync_modes"] == spec["supported_destination_sync_modes"]


# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_entrypoint_is_the_connector_console_script(metadata: dict[str, Any]) -> None:
    (entrypoint,) = _docker("ENTRYPOINT")
    command = json.loads(entrypoint)  # exec form, so signals reach the connector
    connector_name = metadata["data"]["dockerRepository"].split("/")[-1]
    assert command == [connector_name]
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")
               if ep.dist is not None and ep.dist.name == "airbyte-destination-crowdtwist"}
    assert scripts.get(connector_name) == "destination_crowdtwist.run:run"
    envs = " ".join(_docker("ENV"))
    # The platform wraps the command found in AIRBYTE_ENTRYPOINT.
    assert f'AIRBYTE_ENTRYPOINT="{connector_name}"' in envs
    assert _docker("WORKDIR") == ["/airbyte/integration_code"]
    assert any(re.fullmatch(r"pip install (--no-cache-dir )?\.", run) for run in _docker("RUN"))


def test_the_image_runs_as_the_airbyte_user_after_installing_as_root() -> None:
    """Airbyte's template: the install runs as root (into the image's Python, which the connector
    cannot then change), the image runs as `airbyte`. USER is the last user switch, after every RUN."""
    steps = dockerfile_steps()
    users = [i for i, step in enumerate(steps) if step.instruction == "USER"]
    assert users, "the image runs as root"
    assert steps[users[-1]].args == "airbyte"
    assert [steps[i].args for i in users] == ["airbyte"]
    runs = [i for i, step in enumerate(steps) if step.instruction == "RUN"]
    assert runs and max(runs) < users[-1]


def test_dockerignore_keeps_venv_tests_sandbox_and_caches_out() -> None:
    patterns = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for pattern in (".venv", "unit_tests", "integration_tests", "tests_support", "crowdtwist_sandbox",
                    "**/__pycache__", ".pytest_cache"):
        assert pattern in patterns


def test_the_image_copies_the_connector_and_its_install_files_only() -> None:
    copied = {source for args in _docker("COPY") for source in args.split()[:-1]}
    assert copied == {"setup.py", "pyproject.toml", "spec.json", "destination_crowdtwist"}


def test_a_developer_install_has_the_sandbox_and_its_console_script() -> None:
    """setup.py installs crowdtwist_sandbox whenever the checkout has it (the image build does not)."""
    dist = importlib.metadata.distribution("airbyte-destination-crowdtwist")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {
        "destination-crowdtwist": "destination_crowdtwist.run:run",
        "crowdtwist-sandbox": "crowdtwist_sandbox.cli:main",
    }
    assert (Path(sys.executable).parent / "crowdtwist-sandbox").exists(), "run `make venv` first"


def test_dockerfile_parser_joins_continuations_and_skips_comments() -> None:
    text = (
        "# syntax comment\n"
        "FROM base:1\n"
        "\n"
        "run pip install \\\n"
        "    --no-cache-dir \\\n"
        "    .\n"
        'ENTRYPOINT ["x"]\n'
    )
    assert parse_dockerfile(text) == [
        Step("FROM", "base:1"),
        Step("RUN", "pip install --no-cache-dir ."),
        Step("ENTRYPOINT", '["x"]'),
    ]
    with pytest.raises(ValueError, match="continuation"):
        parse_dockerfile("FROM a\nRUN x \\\n")


# --- Makefile / CI ---------------------------------------------------------------------------------


def _make_dry_run(venv: Path, target: str) -> str:
    assert shutil.which("make"), "make is required"
    proc = subprocess.run(
        ["make", "-n", "-C", str(ROOT), f"VENV={venv}", "PYTHON=python3", target],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_test_bootstraps_a_missing_venv_then_lints_typechecks_and_tests(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    lines = _make_dry_run(venv, "test").splitlines()

    def position(command: str) -> int:
        matches = [i for i, line in enumerate(lines) if line.strip() == command]
        assert len(matches) == 1, (command, lines)
        return matches[0]

    create = position(f"python3 -m venv --clear {venv}; \\")
    install = position(f"{venv}/bin/python -m pip install --quiet --progress-bar off -e '.[dev]'")
    stamp = position(f"touch {venv}/.installed")
    ruff, mypy = position(f"{venv}/bin/ruff check ."), position(f"{venv}/bin/mypy")
    pytest = position(f'{venv}/bin/pytest -m "not soak and not perf and not tools" -n auto --dist worksteal')
    assert create < install < stamp < ruff < mypy < pytest


def test_make_check_is_lint_typecheck_and_the_tests_not_marked_slow(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    check = [line.strip() for line in _make_dry_run(venv, "check").splitlines()]
    commands = [f"{venv}/bin/ruff check .", f"{venv}/bin/mypy",
                f'{venv}/bin/pytest -m "not slow and not perf" -n auto --dist worksteal']
    assert [line for line in check if line in commands] == commands


# The tiers, said once in the Makefile and repeated by the README, pyproject.toml and .ci/run: the
# marker expression each make target runs, and what CI runs.
TIERS = {
    "check": 'pytest -m "not slow and not perf" -n auto --dist worksteal',
    "test": 'pytest -m "not soak and not perf and not tools" -n auto --dist worksteal',
    "soak": "pytest -m soak",
    "perf": "pytest -m perf",
    "tools": "pytest -m tools",
}
CI_TARGETS = ["test", "soak", "perf", "tools"]


def test_the_tiers_are_the_same_in_makefile_readme_pyproject_and_ci(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    for target, command in TIERS.items():
        assert f"{venv}/bin/{command}" in [line.strip() for line in _make_dry_run(venv, target).splitlines()], target
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.findall(r"^make (\w+)$", ci, re.MULTILINE) == CI_TARGETS
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for text in (readme, makefile):
        for command in (TIERS["check"], TIERS["test"]):
            assert command.removeprefix("pytest ") in text, command
        assert ".ci/run" in text
    # The contradictions of issue 18: make test is not "the full run", and it does not run the soak.
    assert "the full run" not in readme
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    markers = {line.split(":")[0].strip().strip('"'): line for line in pyproject.splitlines()
               if re.match(r'\s*"(slow|soak|perf|tools):', line)}
    assert set(markers) == {"slow", "soak", "perf", "tools"}
    assert all("not by make test" in markers[name] for name in ("soak", "perf", "tools"))
    assert "run by make test" in markers["slow"]


def _measures(fn: ast.FunctionDef) -> bool:
    """Whether a test reads this process's resident memory or times its own work with the performance
    counter (the measurements of the perf tier do).

    The bench smoke run only checks that the bench reported a figure (peak_rss_mb), which is no
    measurement of its own. A bound on how long a wait or a stop takes (``time.monotonic``) is
    behaviour, not a measurement; the unit tier counts work exactly instead (SQLite steps, cache hits)."""
    text = ast.unparse(fn)
    return any(needle in text for needle in (
        "_rss_kib(", "_rss_mib(", "/proc/self/statm", "getrusage", "tracemalloc", "perf_counter(", "process_time("))


def _marks(fn: ast.FunctionDef) -> set[str]:
    return {ast.unparse(d).removeprefix("pytest.mark.").split("(")[0] for d in fn.decorator_list}


def test_memory_and_timing_measurements_are_marked_perf_so_make_test_skips_them() -> None:
    """A measurement on a shared machine is slow and noisy: it belongs to `make perf` (and CI)."""
    measuring = []
    for tree_dir in ("unit_tests", "integration_tests"):
        for path in sorted((ROOT / tree_dir).glob("test_*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for fn in tree.body:
                if isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_") and _measures(fn):
                    measuring.append(f"{path.name}::{fn.name}")
                    assert "perf" in _marks(fn), f"{path.name}::{fn.name} measures memory or time but is not marked perf"
    assert len(measuring) >= 2, measuring


def _module_marks(node: ast.expr) -> set[str]:
    """The marks of a ``pytestmark`` value (one mark or a list of them)."""
    items = node.elts if isinstance(node, ast.List) else [node]
    return {ast.unparse(item).removeprefix("pytest.mark.") for item in items}


def _pytestmark(tree: ast.Module) -> set[str]:
    """The names of the marks a test module gives all its tests (``pytestmark = ...``), without arguments."""
    marks: set[str] = set()
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets):
            marks |= {m.split("(")[0] for m in _module_marks(n.value)}
    return marks


def test_slow_marker_covers_every_test_using_the_install_replay_or_the_bench_run() -> None:
    """make check skips `slow`; these fixtures take most of the suite's time (a venv install, a bench run),
    so make test leaves them to their tiers too: the install replay to make tools, the bench run to make perf."""
    expensive = {"installed", "bench"}
    users = []
    for name, tier in (("integration_tests/test_install.py", "tools"), ("integration_tests/test_bench_smoke.py", "perf")):
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"))
        module_marks = _pytestmark(tree)
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_") \
                    and expensive & {a.arg for a in fn.args.args}:
                users.append(fn.name)
                marks = module_marks | _marks(fn)
                assert {"slow", tier} <= marks, f"{name}::{fn.name}: {sorted(marks)}"
    assert len(users) >= 4, users


def test_every_soak_and_tools_test_is_also_marked_slow_so_make_check_skips_it() -> None:
    """make check selects by `not slow and not perf`: a soak or tools test without `slow` would run in the
    quick loop (the soak's SIGTERM runs did, 30 connector processes a command, until session 31)."""
    tiered = []
    for tree_dir in ("unit_tests", "integration_tests"):
        for path in sorted((ROOT / tree_dir).glob("test_*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            module_marks = _pytestmark(tree)
            for fn in tree.body:
                if isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_"):
                    marks = module_marks | _marks(fn)
                    if marks & {"soak", "tools"}:
                        tiered.append(f"{path.name}::{fn.name}")
                        assert "slow" in marks, f"{path.name}::{fn.name} is marked {sorted(marks)} but not slow"
    assert len(tiered) >= 6, tiered


def test_make_reinstalls_only_when_packaging_files_are_newer_than_the_stamp(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    stamp = venv / ".installed"
    stamp.touch()
    newest = max((ROOT / name).stat().st_mtime for name in ("setup.py", "pyproject.toml"))
    os.utime(stamp, (newest + 60, newest + 60))
    assert "pip install" not in _make_dry_run(venv, "test")
    os.utime(stamp, (newest - 60, newest - 60))
    assert "pip install" in _make_dry_run(venv, "test")


def test_make_demo_runs_the_demo_script_and_bench_passes_args(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    future = time.time() + 3600
    (venv / ".installed").touch()
    os.utime(venv / ".installed", (future, future))
    # -C makes make print "Entering/Leaving directory" lines; the rest is the recipe.
    demo = [line for line in _make_dry_run(venv, "demo").splitlines() if not line.startswith("make")]
    assert demo == [f"{venv}/bin/python scripts/demo.py"]
    assert (ROOT / "scripts" / "demo.py").is_file()
    proc = subprocess.run(
        ["make", "-n", "-C", str(ROOT), f"VENV={venv}", "bench", "BENCH_ARGS=--rows 10"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "scripts/bench.py --rows 10" in proc.stdout


def test_ci_run_calls_make_test() -> None:
    ci = ROOT / ".ci" / "run"
    text = ci.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert re.search(r"^make test$", text, re.MULTILINE)
    assert os.access(ci, os.X_OK)


# --- docs ------------------------------------------------------------------------------------------


def _changelog_rows() -> list[list[str]]:
    text = (ROOT / "docs" / "crowdtwist.md").read_text(encoding="utf-8")
    _, found, section = text.partition("\n## Changelog\n")
    assert found, "docs/crowdtwist.md has no '## Changelog' section"
    section = section.split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.strip().startswith("|")]
    header, separator, *body = rows
    assert [cell.lower() for cell in header] == ["version", "date", "pull request", "subject"]
    assert all(set(cell) <= set(":-") for cell in separator)
    return body


def test_changelog_starts_with_the_current_version() -> None:
    rows = _changelog_rows()
    assert rows, "the changelog has no rows"
    version, date, _pr, subject = rows[0]  # newest first
    assert version == _setup_version()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)
    assert subject


def test_readme_documents_the_entry_points() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for needle in ("make demo", "make test", '"auth_type": "api_key"', '"auth_type": "hmac"',
                   "## Performance", "## Exactly-once activity credits", "make bench",
                   "[docs/performance.md](docs/performance.md)", "[docs/deploy.md](docs/deploy.md)"):
        assert needle in readme, needle
    # Newcomer path first: the steps to try, run and deploy the connector come before the reference.
    assert readme.index("## Start here") < readme.index("## Tests") < readme.index("## Running the connector")
    # The figures live in docs/performance.md; the README keeps a summary (issue 18: 40% of the README).
    performance = readme.split("## Performance\n", 1)[1].split("\n## ", 1)[0]
    assert len(performance.splitlines()) < 15
    assert "| round trip |" in (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert "GB of virtualenvs" in readme
