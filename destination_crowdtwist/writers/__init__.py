"""Writers: one per CrowdTwist object type, picked by :func:`make_writer`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from destination_crowdtwist.client import CrowdTwistClient
    from destination_crowdtwist.config import ConnectorConfig
    from destination_crowdtwist.writers.base import Writer


def make_writer(cfg: ConnectorConfig, client: CrowdTwistClient) -> Writer:
    """The writer for the configured object type."""
    if cfg.object_type == "activity_credit":
        from destination_crowdtwist.writers.activities import ActivityCreditWriter

        return ActivityCreditWriter(cfg, client)
    from destination_crowdtwist.writers.users import UserProfileWriter

    return UserProfileWriter(cfg, client)
