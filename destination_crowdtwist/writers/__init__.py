"""Writers: one per CrowdTwist object type."""

from __future__ import annotations
