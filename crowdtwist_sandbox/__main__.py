"""``python -m crowdtwist_sandbox`` runs the same CLI as the ``crowdtwist-sandbox`` console script."""

from __future__ import annotations

import sys

from crowdtwist_sandbox.cli import main

sys.exit(main())
