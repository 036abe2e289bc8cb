"""Airbyte destination for Oracle CrowdTwist: member profiles and activity credits."""

from __future__ import annotations

from typing import Any

__all__ = ["DestinationCrowdtwist"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that the pure modules (mapping, signing, ...) load without the CDK stack.
    if name == "DestinationCrowdtwist":
        from destination_crowdtwist.destination import DestinationCrowdtwist

        return DestinationCrowdtwist
    raise AttributeError(name)
