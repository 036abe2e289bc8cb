"""The destination: ``spec``, ``check``, ``discover`` (data activation) and ``write``.

``write`` parses the config, routes the configured streams (refusing sync modes CrowdTwist cannot
honour), has wiring build the sync's parts, and runs its :class:`~destination_crowdtwist.sync.session.WriteSession`:
records go to the worker pool, states come back out only when everything before them has settled.
The CDK's entry point, with its gaps fixed, is :class:`~destination_crowdtwist.cdk_adapter.AdaptedDestination`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from airbyte_cdk.models import AirbyteConnectionStatus, AirbyteMessage, ConfiguredAirbyteCatalog, Status

from destination_crowdtwist.api.errors import THROTTLED, UNAVAILABLE, CrowdTwistError, TransientError, status_rule
from destination_crowdtwist.cdk_adapter import AdaptedDestination, state_message
from destination_crowdtwist.config import ConnectorConfig, parse_config
from destination_crowdtwist.discover import discover_catalog, read_active_activities
from destination_crowdtwist.sync.checkpoint import StreamKey
from destination_crowdtwist.sync.protocol import BadInput, traced
from destination_crowdtwist.sync.routing import route_stream, unmatched_mapping_streams
from destination_crowdtwist.wiring import open_session
from destination_crowdtwist.writers.activities import full_refresh_warning, unsafe_policy_warning
from destination_crowdtwist.writers.base import StreamContext

logger = logging.getLogger("airbyte")


class DestinationCrowdtwist(AdaptedDestination):
    """Airbyte destination for Oracle CrowdTwist: member profiles and activity credits."""

    def __init__(self, *, index_clock: Callable[[], float] = time.time) -> None:
        """``index_clock``: epoch seconds by which the member index dates and ages its entries
        (tests inject a fake one to let days pass between syncs).
        """
        self._index_clock = index_clock

    # -- check --------------------------------------------------------------------------------

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        """Validate the config, call ``GET /v2/activities`` and, when ``object_storage_config`` is S3, write
        and delete a probe object in the bucket (and, with ``sync_state: bucket``, one under the sync
        state's prefix); FAILED messages say what to fix.
        """
        try:
            cfg = parse_config(config)
            activities = read_active_activities(cfg)
        except CrowdTwistError as exc:
            return AirbyteConnectionStatus(status=Status.FAILED, message=_check_failure_message(exc))
        count = len(activities)
        noun = "activity" if count == 1 else "activities"
        message = f"Connected to CrowdTwist at {cfg.api_base_url}: {count} active {noun} found."
        if cfg.object_type == "activity_credit" and count == 0:
            message += " Warning: Activity Credit syncs need at least one active activity; every row will be rejected."
        unsafe = unsafe_policy_warning(cfg.credit_verification)
        if unsafe is not None:
            message += f" Warning: {unsafe}"
        storage = cfg.object_storage_config
        if storage is not None:
            from destination_crowdtwist.rejects.probe import probe  # boto3 loads only when a bucket is set

            problem = probe(storage)
            if problem is not None:
                return AirbyteConnectionStatus(status=Status.FAILED, message=problem)
            message += f" Rejected rows can be stored in {storage.location}."
        if storage is not None and cfg.sync_state.in_bucket:
            from destination_crowdtwist.state.connector import check_state

            problem = check_state(cfg)
            if problem is not None:
                return AirbyteConnectionStatus(status=Status.FAILED, message=problem)
            message += " The sync state (member index and credit ledger) can be kept there."
        return AirbyteConnectionStatus(status=Status.SUCCEEDED, message=message)

    # -- discover -----------------------------------------------------------------------------

    def discover(self, logger: logging.Logger, config: Mapping[str, Any]) -> dict[str, Any]:
        """The data-activation ``DestinationCatalog`` (as JSON), with activities read live.

        A failure raises a traced error whose message is the text ``check`` would show.
        """
        try:
            return discover_catalog(parse_config(config))
        except CrowdTwistError as exc:
            raise traced(exc, message=_check_failure_message(exc)) from None

    # -- write --------------------------------------------------------------------------------

    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage | BadInput],
    ) -> Iterable[AirbyteMessage]:
        """Write records to CrowdTwist; echo each state once everything before it has settled."""
        try:
            cfg = parse_config(config)
            streams = _stream_contexts(configured_catalog, cfg)
        except CrowdTwistError as exc:
            raise traced(exc) from None
        _warn_full_refresh_credits(configured_catalog, streams, cfg)
        for name in unmatched_mapping_streams(cfg, streams.values()):
            logger.warning(
                f"field_mapping has rules for stream {name!r}, which is not in this connection's catalog: they apply "
                "to no row. Check the stream name (its name, or namespace.name)."
            )
        try:
            session = open_session(cfg, streams, state_message=state_message, index_clock=self._index_clock)
        except CrowdTwistError as exc:
            raise traced(exc) from None
        yield from session.run(input_messages)


def _stream_contexts(catalog: ConfiguredAirbyteCatalog, cfg: ConnectorConfig) -> dict[StreamKey, StreamContext]:
    streams: dict[StreamKey, StreamContext] = {}
    for configured in catalog.streams:
        mode = configured.destination_sync_mode
        ctx = route_stream(
            namespace=configured.stream.namespace,
            name=configured.stream.name,
            sync_mode=str(getattr(mode, "value", mode)),
            object_name=configured.destination_object_name,
            primary_key=configured.primary_key,
            cfg=cfg,
            sync_id=configured.sync_id,
            generation_id=configured.generation_id,
        )
        streams[ctx.key] = ctx
    return streams


def _warn_full_refresh_credits(
    catalog: ConfiguredAirbyteCatalog, streams: dict[StreamKey, StreamContext], cfg: ConnectorConfig
) -> None:
    """A WARN per full_refresh Activity Credit stream whose credit_verification does not verify every row."""
    for configured in catalog.streams:
        mode = configured.sync_mode
        ctx = streams.get((configured.stream.namespace, configured.stream.name))
        if ctx is None or str(getattr(mode, "value", mode)) != "full_refresh" or ctx.object_name != "activity_credit":
            continue
        warning = full_refresh_warning(cfg.credit_verification, ctx.label)
        if warning is not None:
            logger.warning(warning)


def _check_failure_message(exc: CrowdTwistError) -> str:
    """What ``check`` (and ``discover``) tell the user when the config or the connection fails."""
    return _transient_check_message(exc) if isinstance(exc, TransientError) else str(exc)


def _transient_check_message(exc: TransientError) -> str:
    # What the status means comes from the one status table (api/errors.py), as for the sync itself.
    meaning = status_rule(exc.status).meaning if exc.status is not None else None
    if meaning is UNAVAILABLE:
        return (
            "CrowdTwist is unavailable (HTTP 503, probably a maintenance window). Try the check again later. "
            f"Details: {exc}"
        )
    if meaning is THROTTLED:
        return (
            "CrowdTwist is rate limiting this program right now (HTTP 429); other integrations may be using the "
            f"request budget. Try again in a minute. Details: {exc}"
        )
    return str(exc)


__all__ = ["DestinationCrowdtwist"]
