"""Console-script entry point: ``destination-crowdtwist spec|check|discover|write``."""

from __future__ import annotations

import sys

from destination_crowdtwist.destination import DestinationCrowdtwist


def run() -> None:
    """Run the destination with the process arguments."""
    DestinationCrowdtwist().run(sys.argv[1:])
