"""docs/deploy.md: every command it shows exists with the options it uses, every file it names is there.

The guide's ``sh`` blocks are read line by line. Per program:

- ``make T``: T is a target of the Makefile;
- ``.venv/bin/destination-crowdtwist CMD``: CMD is one of the connector's commands, its options are
  ones the connector accepts, and the files after ``--config`` / ``--catalog`` / ``<`` are in the
  repository (``secrets/`` is the user's own, git-ignored, and is only checked to be ignored);
- ``.venv/bin/crowdtwist-sandbox`` and ``.venv/bin/airbyte-cdk image build``: each option is in the
  command's ``--help``;
- ``docker``: the subcommand is one of the few the guide may use and the image name and tag are
  metadata.yaml's (no Docker engine is needed; the options of docker itself are not checked here);
- anything else (``mkdir``, ``cp``, a variable assignment) is a shell builtin or coreutils.

Files the prose names in backticks (``Dockerfile``, ``examples/...``) must exist too.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "deploy.md"
BIN = Path(sys.executable).parent

CONNECTOR_COMMANDS = {"spec": set(), "check": {"--config"}, "discover": {"--config"},
                      "write": {"--config", "--catalog"}, "replay-rejects": set()}
DOCKER_SUBCOMMANDS = {"build", "run", "tag", "login", "push", "buildx"}
PLAIN_COMMANDS = {"mkdir", "cp", "export"}


def _guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def _commands(text: str) -> list[list[str]]:
    """The command lines of the guide's sh blocks, split like the shell (comments and `&` dropped)."""
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    out = []
    for block in blocks:
        for line in block.splitlines():
            for part in line.split("&&"):
                argv = shlex.split(part, comments=True)
                if argv and argv[-1] == "&":
                    argv = argv[:-1]
                if argv:
                    out.append(argv)
    return out


def _metadata() -> dict[str, str]:
    data = yaml.safe_load((ROOT / "metadata.yaml").read_text(encoding="utf-8"))["data"]
    return {"repository": data["dockerRepository"], "tag": data["dockerImageTag"]}


@cache
def _help(*argv: str) -> str:
    proc = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=120, check=False,
                          env={"COLUMNS": "200", "PATH": str(BIN), "TERM": "dumb"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _options(argv: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in argv if arg.startswith("--")]


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w-]*):", makefile, re.MULTILINE)}


def _repo_file(name: str) -> None:
    if name.startswith("secrets/"):
        proc = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT, timeout=30, check=False)
        assert proc.returncode == 0, f"{name} must be git-ignored"
    else:
        assert (ROOT / name).is_file(), f"the guide names {name}, which is not in the repository"


def _check_connector(argv: list[str]) -> None:
    command, *rest = argv
    assert command in CONNECTOR_COMMANDS, argv
    assert set(_options(rest)) <= CONNECTOR_COMMANDS[command], argv
    for flag in ("--config", "--catalog", "<"):
        if flag in rest:
            _repo_file(rest[rest.index(flag) + 1])


def _check_docker(argv: list[str], image: str) -> None:
    sub = argv[0]
    assert sub in DOCKER_SUBCOMMANDS, argv
    named = [a for a in argv if "destination-crowdtwist" in a]
    for name in named:
        assert name.endswith(image), f"{argv}: the image is {image} (metadata.yaml)"
    if sub in ("build", "buildx"):
        assert argv[-1] == "." and (ROOT / "Dockerfile").is_file()


def test_every_command_of_the_guide_exists_with_its_options() -> None:
    commands = _commands(_guide())
    meta = _metadata()
    image = f"{meta['repository']}:{meta['tag']}"
    seen: set[str] = set()
    for argv in commands:
        program = argv[0]
        if re.fullmatch(r"[A-Z_]+=\S+", program):  # REGISTRY=...
            continue
        if program == "make":
            assert set(argv[1:]) <= _make_targets(), argv
        elif program == ".venv/bin/destination-crowdtwist":
            _check_connector(argv[1:])
        elif program == ".venv/bin/crowdtwist-sandbox":
            assert set(_options(argv[1:])) <= set(re.findall(r"--[\w-]+", _help(str(BIN / "crowdtwist-sandbox"))))
        elif program == ".venv/bin/airbyte-cdk":
            assert argv[1:3] == ["image", "build"], argv
            help_text = _help(str(BIN / "airbyte-cdk"), "image", "build")
            assert set(_options(argv[3:])) <= set(re.findall(r"--[\w-]+", help_text)), argv
            dockerfile = argv[argv.index("--dockerfile") + 1]
            assert (ROOT / dockerfile).is_file()
            assert argv[argv.index("--tag") + 1] == meta["tag"]
        elif program == "docker":
            _check_docker(argv[1:], image)
        else:
            assert program in PLAIN_COMMANDS, f"the guide runs {program}, which this test does not know"
            for arg in argv[1:]:
                if "/" in arg and not arg.startswith("-"):
                    _repo_file(arg)
        seen.add(program if program != ".venv/bin/airbyte-cdk" else "airbyte-cdk")
    # The guide shows the whole path: local run, both builds, tag and push, discover.
    assert {"make", ".venv/bin/destination-crowdtwist", ".venv/bin/crowdtwist-sandbox", "airbyte-cdk",
            "docker"} <= seen
    subcommands = {argv[1] for argv in commands if argv[0] == "docker"}
    assert {"build", "tag", "push", "run"} <= subcommands
    connector = {argv[1] for argv in commands if argv[0] == ".venv/bin/destination-crowdtwist"}
    assert {"check", "write", "discover"} <= connector


def test_every_file_the_guide_names_is_in_the_repository() -> None:
    text = _guide()
    named = set(re.findall(r"`((?:[\w.-]+/)*[\w.-]+\.(?:json|jsonl|yaml|md|py)|Dockerfile|\.dockerignore)`", text))
    assert {"Dockerfile", ".dockerignore", "metadata.yaml", "spec.json", "examples/config.sandbox.json"} <= named
    for name in sorted(named):
        if name.startswith("secrets/"):
            continue
        candidates = [ROOT / name, GUIDE.parent / name]
        assert any(c.is_file() for c in candidates), f"the guide names {name}, which is not in the repository"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (GUIDE.parent / target).is_file(), target


def test_the_guide_names_the_image_and_version_of_metadata_and_the_readme_links_it() -> None:
    text = _guide()
    meta = _metadata()
    assert f"`{meta['repository']}`" in text and f"`{meta['tag']}`" in text
    assert "supportsDataActivation: true" in text
    assert "1.8" in text
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/deploy.md)" in readme


def test_the_command_reader_splits_blocks_like_the_shell() -> None:
    text = "```sh\nA=b\nx --y 'a b' < f.jsonl  # comment\nserver --port 1 &\nmkdir -p d && cp a d/b\n```\n"
    assert _commands(text) == [["A=b"], ["x", "--y", "a b", "<", "f.jsonl"], ["server", "--port", "1"],
                               ["mkdir", "-p", "d"], ["cp", "a", "d/b"]]


def _check_line(argv: list[str]) -> None:
    if argv[0] == "make":
        assert set(argv[1:]) <= _make_targets(), argv
    else:
        _check_connector(argv[1:])


@pytest.mark.parametrize("bad", ["make no-such-target", ".venv/bin/destination-crowdtwist deploy",
                                 ".venv/bin/destination-crowdtwist check --config examples/nope.json",
                                 ".venv/bin/destination-crowdtwist write --config examples/config.sandbox.json --debug"])
def test_a_wrong_command_is_caught(bad: str) -> None:
    with pytest.raises(AssertionError):
        _check_line(shlex.split(bad))
    _check_line(shlex.split(".venv/bin/destination-crowdtwist check --config examples/config.sandbox.json"))
