"""Packaging for airbyte-destination-crowdtwist (the connector and its CrowdTwist sandbox)."""

from __future__ import annotations

from setuptools import find_packages, setup

MAIN_REQUIREMENTS = [
    "airbyte-cdk>=7.39.1,<8",
    "requests>=2.32,<3",
    "jsonschema>=4.17,<5",
]

DEV_REQUIREMENTS = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "ruff>=0.6",
    "mypy>=1.10",
    "types-requests>=2.31",
    "hypothesis>=6.100",
]

setup(
    name="airbyte-destination-crowdtwist",
    version="0.1.0",
    description="Airbyte destination that syncs member profiles and activity credits to Oracle CrowdTwist.",
    license="MIT",
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["destination_crowdtwist", "destination_crowdtwist.*",
                                    "crowdtwist_sandbox", "crowdtwist_sandbox.*"]),
    package_data={"destination_crowdtwist": ["spec.json", "py.typed"], "crowdtwist_sandbox": ["py.typed"]},
    install_requires=MAIN_REQUIREMENTS,
    extras_require={"dev": DEV_REQUIREMENTS},
    entry_points={
        "console_scripts": [
            "destination-crowdtwist=destination_crowdtwist.run:run",
            "crowdtwist-sandbox=crowdtwist_sandbox.cli:main",
        ],
    },
)
