"""Replay the Dockerfile's COPY and `pip install` steps in a fresh venv and run the installed connector.

There is no Docker engine here, so this is the closest check that the image would work: the
files the Dockerfile copies are enough for a non-editable install, the wheel carries spec.json
as a real file (not the repository's symlink), the connector's console script starts, and the
CrowdTwist sandbox (a test tool) is not part of the image.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests_support.dockerfile import dockerfile_steps, dockerignore_patterns, dockerignored

ROOT = Path(__file__).resolve().parent.parent


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = ["**/__pycache__", "*.sqlite", ".venv", "docs", "!docs/keep.md"]
    assert dockerignored("destination_crowdtwist/writers/__pycache__/x.pyc", patterns)
    assert dockerignored("__pycache__", patterns)
    assert dockerignored("a.sqlite", patterns)
    assert not dockerignored("sub/a.sqlite", patterns)  # `*` does not cross `/`
    assert dockerignored(".venv/bin/python", patterns)
    assert not dockerignored("destination_crowdtwist/docs_helper.py", patterns)
    assert dockerignored("docs/crowdtwist.md", patterns)
    assert not dockerignored("docs/keep.md", patterns)


# Files a checkout may hold that must never reach an image: credentials, local state with members'
# data (rejected rows, member index, ledger, PyAirbyte's caches), other venvs and git's history.
MUST_STAY_OUT = (
    "secrets/config.json",
    "secrets/hmac.json",
    ".env",
    ".env.production",
    "examples/config.sandbox.json",
    "rejected.jsonl",
    "rejects.jsonl.gz",
    "members.sqlite",
    "ledger.sqlite",
    ".cache/crowdtwist_state/state.duckdb",
    ".venv/bin/python",
    ".venv-pyairbyte/bin/python",
    ".git/config",
    "integration_tests/conftest.py",
    "crowdtwist_sandbox/server.py",
)


def test_secrets_and_local_state_stay_out_of_the_build_context() -> None:
    """What .dockerignore leaves out is not sent to the builder, so no COPY (ours, or the `COPY . ./` of
    Airbyte's template that `airbyte-cdk image build` renders) can put it in the image."""
    patterns = dockerignore_patterns()
    leaked = [path for path in MUST_STAY_OUT if not dockerignored(path, patterns)]
    assert leaked == []


def _image_files(image_workdir: Path) -> list[str]:
    return sorted(p.relative_to(image_workdir).as_posix() for p in image_workdir.rglob("*") if not p.is_dir())


def test_the_copied_files_are_the_connector_sources_and_its_install_files(tmp_path: Path) -> None:
    """The COPY steps replayed against this checkout: the image holds the package's sources, spec.json
    and the two packaging files, nothing else (no caches, tests, sandbox, examples or secrets)."""
    (workdir,) = [s.args for s in dockerfile_steps() if s.instruction == "WORKDIR"]
    image_workdir = tmp_path / workdir.lstrip("/")
    image_workdir.mkdir(parents=True)
    _replay_copies(image_workdir)
    files = _image_files(image_workdir)
    assert {"setup.py", "pyproject.toml", "spec.json", "destination_crowdtwist/__init__.py",
            "destination_crowdtwist/spec.json", "destination_crowdtwist/run.py"} <= set(files)
    unexpected = [f for f in files if f not in ("setup.py", "pyproject.toml", "spec.json")
                  and not (f.startswith("destination_crowdtwist/")
                           and f.endswith((".py", "/spec.json", "/py.typed")))]
    assert unexpected == []
    assert (image_workdir / "destination_crowdtwist" / "spec.json").is_symlink()


def _copy_steps() -> list[tuple[list[str], str]]:
    copies = []
    for step in dockerfile_steps():
        if step.instruction in ("COPY", "ADD"):
            *sources, dest = shlex.split(step.args)
            assert not any(s.startswith("--") for s in sources), f"COPY flags are not replayed: {step.args}"
            copies.append((sources, dest))
    return copies


def test_copy_sources_exist_and_survive_dockerignore() -> None:
    """Docker fails the build when a COPY source is missing from the (filtered) context."""
    patterns = dockerignore_patterns()
    copies = _copy_steps()
    assert copies
    for sources, _dest in copies:
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not dockerignored(source, patterns), f"{source} is excluded by .dockerignore"


def _replay_copies(image_workdir: Path) -> None:
    patterns = dockerignore_patterns()
    for sources, dest in _copy_steps():
        target = image_workdir / dest
        into_dir = dest.endswith("/") or len(sources) > 1
        for source in sources:
            src = ROOT / source
            if src.is_dir():
                def ignore(directory: str, names: list[str]) -> set[str]:
                    rel_dir = Path(directory).relative_to(ROOT).as_posix()
                    return {n for n in names if dockerignored(f"{rel_dir}/{n}", patterns)}

                # Docker copies a directory's contents and keeps symlinks as links.
                shutil.copytree(src, target, symlinks=True, ignore=ignore, dirs_exist_ok=True)
            else:
                out = target / src.name if into_dir else target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, out)


def _pip_install_args() -> list[str]:
    runs = [shlex.split(step.args) for step in dockerfile_steps() if step.instruction == "RUN"]
    assert len(runs) == 1, f"only a single `RUN pip install` step can be replayed, got {runs}"
    (argv,) = runs
    assert argv[:2] == ["pip", "install"], argv
    # The image build avoids a cache layer; the replay may use pip's cache to stay fast.
    return [arg for arg in argv[2:] if arg != "--no-cache-dir"]


@dataclass(frozen=True)
class InstalledImage:
    """A fresh venv that holds the connector as the Dockerfile installs it."""

    bin_dir: Path
    site_packages: Path
    entrypoint: list[str]
    env: dict[str, str]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> InstalledImage:
    base = tmp_path_factory.mktemp("image")
    steps = dockerfile_steps()
    (workdir,) = [s.args for s in steps if s.instruction == "WORKDIR"]
    image_workdir = base / "rootfs" / workdir.lstrip("/")
    image_workdir.mkdir(parents=True)
    _replay_copies(image_workdir)

    venv = base / "venv"
    # A genuinely fresh venv (no system site-packages); sys.executable's base interpreter is used.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--progress-bar", "off", *_pip_install_args()],
        cwd=image_workdir, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Nothing installed may point back into the copied sources: remove them before running.
    shutil.rmtree(base / "rootfs")

    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, env=env, timeout=60,
    ).stdout.strip()
    (entrypoint,) = [json.loads(s.args) for s in steps if s.instruction == "ENTRYPOINT"]
    return InstalledImage(venv / "bin", Path(site), entrypoint, env)


@pytest.mark.slow
@pytest.mark.tools
@pytest.mark.timeout(600)
def test_installed_entrypoint_prints_the_top_level_spec(installed: InstalledImage, tmp_path: Path) -> None:
    command = [str(installed.bin_dir / installed.entrypoint[0]), *installed.entrypoint[1:], "spec"]
    proc = subprocess.run(command, cwd=tmp_path, env=installed.env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    specs = [m["spec"] for m in messages if m.get("type") == "SPEC"]
    assert len(specs) == 1, proc.stdout
    expected = json.loads((ROOT / "spec.json").read_text(encoding="utf-8"))
    assert specs[0]["connectionSpecification"] == expected["connectionSpecification"]


@pytest.mark.slow
@pytest.mark.tools
@pytest.mark.timeout(600)
def test_wheel_carries_spec_json_as_a_real_file(installed: InstalledImage) -> None:
    packaged = installed.site_packages / "destination_crowdtwist" / "spec.json"
    assert packaged.is_file()
    assert not packaged.is_symlink()
    assert json.loads(packaged.read_text(encoding="utf-8")) == json.loads(
        (ROOT / "spec.json").read_text(encoding="utf-8")
    )
    # Non-editable: the package is imported from the venv, not from this checkout.
    assert not list(installed.site_packages.glob("__editable__*"))
    assert sysconfig.get_paths()["purelib"] != str(installed.site_packages)


@pytest.mark.slow
@pytest.mark.tools
@pytest.mark.timeout(600)
def test_image_install_has_no_sandbox(installed: InstalledImage, tmp_path: Path) -> None:
    assert not (installed.bin_dir / "crowdtwist-sandbox").exists()
    assert not (installed.site_packages / "crowdtwist_sandbox").exists()
    probe = ("import importlib.metadata, importlib.util; "
             "dist = importlib.metadata.distribution('airbyte-destination-crowdtwist'); "
             "print(importlib.util.find_spec('crowdtwist_sandbox') is None, "
             "sorted({str(f).split('/')[0] for f in dist.files or []}))")
    proc = subprocess.run([str(installed.bin_dir / "python"), "-c", probe], cwd=tmp_path, env=installed.env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    not_importable, top_level = proc.stdout.strip().split(" ", 1)
    assert not_importable == "True"
    assert "crowdtwist_sandbox" not in top_level
    assert "destination_crowdtwist" in top_level
