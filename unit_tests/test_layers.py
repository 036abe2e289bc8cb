"""The architecture as tests: imports point downward, and the pure layers load without the CDK."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "destination_crowdtwist"

# High to low; a module may import only from its own layer or the ones below it.
LAYERS = [
    {"destination", "run", "cdk_adapter", "__init__"},
    {"discover", "wiring"},
    {"sync"},
    {"rejects", "state"},
    {"writers"},
    {"config"},
    {"api"},
    {"records"},
]


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("destination_crowdtwist."):
            found.add(node.module.removeprefix("destination_crowdtwist."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("destination_crowdtwist.") for a in node.names
                         if a.name.startswith("destination_crowdtwist."))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_downward(path: Path) -> None:
    own = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    for imported in _imports(path):
        assert _layer(imported) >= _layer(own), f"{own} imports {imported}, a higher layer"


def test_the_pure_layers_and_the_config_load_without_the_cdk() -> None:
    code = (
        "import sys\n"
        "import destination_crowdtwist.config, destination_crowdtwist.api.client, destination_crowdtwist.records.mapping\n"
        "import destination_crowdtwist.records.validation, destination_crowdtwist.api.retry\n"
        "print(sorted(m for m in sys.modules if m.startswith('airbyte_cdk')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
