"""Packaging for airbyte-destination-crowdtwist (the connector, plus its CrowdTwist sandbox in a checkout)."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

# crowdtwist_sandbox (the fake CrowdTwist server of the tests, demo and bench) is installed when its
# directory is there: in a developer checkout, `pip install -e '.[dev]'` gets it and its console
# script. The Docker image does not copy the directory, so the image ships the connector alone.
# An extra could not do this (extras add dependencies, never packages), and a second distribution
# would need a second install step everywhere the repository is installed.
WITH_SANDBOX = (Path(__file__).resolve().parent / "crowdtwist_sandbox" / "__init__.py").is_file()

PACKAGES = ["destination_crowdtwist", "destination_crowdtwist.*"]
PACKAGE_DATA = {"destination_crowdtwist": ["spec.json", "py.typed"]}
CONSOLE_SCRIPTS = ["destination-crowdtwist=destination_crowdtwist.run:run"]
if WITH_SANDBOX:
    PACKAGES += ["crowdtwist_sandbox", "crowdtwist_sandbox.*"]
    PACKAGE_DATA["crowdtwist_sandbox"] = ["py.typed"]
    CONSOLE_SCRIPTS.append("crowdtwist-sandbox=crowdtwist_sandbox.cli:main")

MAIN_REQUIREMENTS = [
    "airbyte-cdk>=7.39.1,<8",
    "requests>=2.32,<3",
    # What requests sends through; the transport uses urllib3 2's pool directly (api/transport.py,
    # api/pool_send.py, which falls back to urlopen if a release moves the internals it builds on).
    "urllib3>=2.2,<3",
    # The config is validated against spec.json with it (destination_crowdtwist/config/validation.py).
    "jsonschema>=4.17,<5",
    # Input lines are parsed, and record sizes measured, with it (sync/protocol.py, records/limits.py);
    # airbyte-cdk depends on it too, so it adds nothing to the image, but we rely on it directly.
    "orjson>=3.9,<4",
    # object_storage_config (rejected rows in the user's S3 bucket); imported only when a bucket is set.
    "boto3>=1.34,<2",
]

DEV_REQUIREMENTS = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    # make test runs pytest on one process per CPU (-n auto --dist worksteal; worksteal is new in 3.2).
    "pytest-xdist>=3.2",
    "ruff>=0.6",
    "mypy>=1.10",
    "types-requests>=2.31",
    "pre-commit>=3.5",  # runs .pre-commit-config.yaml (local hooks with this venv's ruff and mypy)
    "hypothesis>=6.100",
    # A real S3 API for the object_storage_config tests (moto_server on 127.0.0.1).
    "moto[server]>=5.0,<6",
]

setup(
    name="airbyte-destination-crowdtwist",
    version="0.4.0",
    description="Airbyte destination that syncs member profiles and activity credits to Oracle CrowdTwist.",
    license="MIT",
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=PACKAGES),
    package_data=PACKAGE_DATA,
    install_requires=MAIN_REQUIREMENTS,
    extras_require={"dev": DEV_REQUIREMENTS},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
