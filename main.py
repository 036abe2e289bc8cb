"""Run the destination from a source checkout: `python main.py spec|check|discover|write ...`."""

from __future__ import annotations

from destination_crowdtwist.run import run

if __name__ == "__main__":
    run()
