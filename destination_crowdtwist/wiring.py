"""The composition root: builds the client, the writers and a sync's parts from a validated config.

The only module that knows every layer's constructor, so that ``api/`` never imports the config
and ``writers/`` never build their own client. The modes of a sync are chosen here, once: the
replay policy (``sync/replay_policy.py``) and whether rows may wait for their member
(``sync/deferral.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airbyte_cdk.models import AirbyteMessage
from requests.auth import AuthBase

from destination_crowdtwist.api.client import CrowdTwistClient
from destination_crowdtwist.api.concurrency import InFlightGate, InFlightTarget
from destination_crowdtwist.api.flow import FlowControl
from destination_crowdtwist.api.ratelimit import RateBudget
from destination_crowdtwist.api.redaction import mask_user_segment
from destination_crowdtwist.api.retry import RetryPolicy
from destination_crowdtwist.api.signing import ApiKeyAuth, HmacAuth
from destination_crowdtwist.config import ApiKeyCredentials, ConnectorConfig
from destination_crowdtwist.records.limits import RecordLimits
from destination_crowdtwist.records.masking import mask_free_text, mask_identifier
from destination_crowdtwist.rejects.local_file import LocalFileSink
from destination_crowdtwist.rejects.sink import RejectSink
from destination_crowdtwist.sync.checkpoint import ReleasedState, StreamKey
from destination_crowdtwist.sync.deferral import MemberWait
from destination_crowdtwist.sync.pipeline import Pipeline
from destination_crowdtwist.sync.replay_policy import ReplayPolicy
from destination_crowdtwist.sync.report import SyncReport
from destination_crowdtwist.sync.session import StateGate, WriteSession
from destination_crowdtwist.writers.activities import ActivityCreditWriter
from destination_crowdtwist.writers.base import StreamContext, Writer
from destination_crowdtwist.writers.created_members import CreatedMembers
from destination_crowdtwist.writers.dry_run import DryRunWriter, Previewable
from destination_crowdtwist.writers.objects import ACTIVITY_CREDIT, USER_PROFILE
from destination_crowdtwist.writers.users import UserProfileWriter

if TYPE_CHECKING:
    from destination_crowdtwist.state.connector import BucketState

logger = logging.getLogger("airbyte")

#: How long one request of a sync keeps retrying 429s before the sync gives up (throttling costs
#: time, never rows; a program-wide limit below our budget slows the sync down instead of failing it).
SYNC_THROTTLE_TIMEOUT = 600.0


def client_from_config(config: ConnectorConfig, *, interactive: bool = False) -> CrowdTwistClient:
    """Build the client, auth, flow control and PII masking from a validated ``ConnectorConfig``.

    The flow control (``client.flow``) is what the pipeline sizes its pool and words its progress by.

    ``interactive`` (``check``, ``discover``): a person is waiting, so throttling and maintenance are
    reported at once instead of being waited out as a sync does (``server_unavailable_wait_seconds``).
    """

    credentials = config.credentials
    auth: AuthBase
    if isinstance(credentials, ApiKeyCredentials):
        auth = ApiKeyAuth(credentials.api_key)
    else:
        auth = HmacAuth(credentials.public_key, credentials.private_key)
    id_type = config.user_identifier_type
    mask_path: Callable[[str], str]
    text_mask: Callable[[str], str] | None
    if config.log_pii:
        mask_path, text_mask = (lambda path: path), None
    else:
        mask_path = lambda path: mask_user_segment(path, lambda value: mask_identifier(value, id_type))  # noqa: E731
        # CrowdTwist's message text may echo the input (names, addresses, dates of birth): in logs,
        # errors and traces it is masked word by word, not only its emails and phone numbers.
        text_mask = mask_free_text
    read_timeout = float(config.request_timeout_seconds)
    # One event for every wait of the API layer: pacing, retry pauses (client.stop() sets it), so a
    # stopping sync is never held up by a 429's Retry-After or a paced slot.
    stopping = threading.Event()
    # Throttling episodes are logged (one WARN when the rate falls, one INFO when it recovers).
    budget = RateBudget(
        float(config.max_requests_per_minute), sleep=lambda seconds: _wait(stopping, seconds), report=logger.log
    )
    # max_concurrency is the ceiling; the requests actually in flight follow budget x RTT.
    gate = InFlightGate(InFlightTarget(max(1, int(config.max_concurrency))), budget.rate_per_second)
    return CrowdTwistClient(
        config.api_base_url,
        auth,
        timeout=(min(10.0, read_timeout), read_timeout),
        max_retries=int(config.max_retries),
        # One pooled connection per worker thread, so no thread waits for or discards a connection.
        pool_size=max(1, int(config.max_concurrency)),
        flow=FlowControl(budget, gate),
        mask_path=mask_path,
        mask_text=text_mask,
        throttle_timeout=0.0 if interactive else SYNC_THROTTLE_TIMEOUT,
        unavailable_timeout=0.0 if interactive else float(config.server_unavailable_wait_seconds),
        retry_after_cap=float(config.max_retry_wait_seconds),
        stopping=stopping,
    )


def _wait(event: threading.Event, seconds: float) -> None:
    event.wait(max(0.0, seconds))


def make_writer(
    object_name: str, cfg: ConnectorConfig, client: CrowdTwistClient, *, index_clock: Callable[[], float] = time.time,
    state: BucketState | None = None, created: CreatedMembers | None = None,
) -> Writer:
    """The writer of one CrowdTwist object (``writers/objects.py``); it serves every stream routed there.

    ``index_clock`` dates and ages the member index's entries (User Profile). ``state``: the sync state
    in the bucket, opened (``cfg`` then points at its files): absence from its ledger proves nothing,
    and the member index's write-ahead clears are flushed to it before their request. ``created``: the
    members this sync creates (:func:`created_members`): the User Profile writer records, the Activity
    Credit writer asks.
    """
    writer: Previewable[Any]
    if object_name == ACTIVITY_CREDIT:
        # Its award-queue waits end when the sync stops (the request after them is then refused).
        writer = ActivityCreditWriter(cfg, client, sleep=client.wait, ledger_proves_absence=state is None,
                                      created=created)
    elif object_name == USER_PROFILE:
        # Its erase-status pauses end when the sync stops, like the credit writer's award-queue waits.
        writer = UserProfileWriter(cfg, client, clock=index_clock, sleep=client.wait,
                                   after_drop=state.after_drop if state is not None else None,
                                   on_created=created.add if created is not None else None)
    else:
        raise ValueError(f"no writer for object {object_name!r}")
    return DryRunWriter(writer) if cfg.dry_run else writer


def make_report(cfg: ConnectorConfig) -> SyncReport:
    """The sync report with the reject sinks the config asks for (raises ConfigError if one cannot open)."""
    sinks: list[RejectSink] = []
    names: list[str] = []
    if cfg.rejected_records_path:
        sinks.append(LocalFileSink(cfg.rejected_records_path, include_pii=cfg.rejected_records_include_pii))
        names.append(cfg.rejected_records_path)
    storage = cfg.object_storage_config
    if storage is not None and cfg.dry_run:
        logger.info(f"Dry run: rejected rows are not uploaded to {storage.location}")
    elif storage is not None:
        # Imported here: boto3 loads only for syncs that use a bucket.
        from destination_crowdtwist.rejects.s3_sink import S3RejectSink

        policy = RetryPolicy(max_retries=int(cfg.max_retries), base=1.0, cap=float(cfg.max_retry_wait_seconds))
        s3_sink: S3RejectSink | None = None
        try:
            s3_sink = S3RejectSink(storage, policy=policy)
            s3_sink.start()  # a missing bucket stops the sync before its first row
        except BaseException:
            if s3_sink is not None:
                # start() made a call, so the client's deadline watchdog thread runs (and a CA certificate
                # may sit in a temporary file): closing the sink stops and removes them.
                s3_sink.close()
            for sink in sinks:
                sink.close()
            raise
        sinks.append(s3_sink)
        names.append(s3_sink.name)
    return SyncReport(
        sinks=sinks,
        sink_names=names,
        log_pii=cfg.log_pii,
        dry_run=cfg.dry_run,
        stop_sample=cfg.reject_stop_sample,
        stop_share=cfg.reject_stop_share,
    )


def open_session(
    cfg: ConnectorConfig,
    streams: Mapping[StreamKey, StreamContext],
    *,
    state_message: Callable[[ReleasedState[Any]], AirbyteMessage],
    index_clock: Callable[[], float] = time.time,
) -> WriteSession:
    """One ``write``'s parts, ready to run: the client, the report, a writer per object, the pipeline,
    the replay policy and (unless unsafe) rows waiting for their member.

    With ``sync_state: bucket`` the state is read first (``state/connector.py``) and the writers use
    its files; the session closes it after the writers.

    Raises ``CrowdTwistError`` when the client, a reject sink or the sync state cannot be set up.
    """
    objects = sorted({stream.object_name for stream in streams.values()})
    state = open_state(cfg, index_clock)
    try:
        if state is not None:
            cfg = state.open()
        client = client_from_config(cfg)
        report = make_report(cfg)
    except BaseException:
        if state is not None:
            state.close()
        raise
    created = created_members(cfg, objects)
    writers = {name: make_writer(name, cfg, client, index_clock=index_clock, state=state, created=created)
               for name in objects}
    pipeline = Pipeline(
        report,
        concurrency=cfg.max_concurrency,
        flow=client.flow,
        progress_interval=cfg.progress_interval_seconds,
        limits=RecordLimits(max_bytes=cfg.max_record_bytes, max_depth=cfg.max_nesting_depth),
        on_stop=client.stop,
        abort=client.abort,
    )
    replay = ReplayPolicy.for_sync(cfg.credit_verification, streams.values())
    member_wait = make_member_wait(cfg, streams.values(), replay)
    if member_wait is not None:
        pipeline.wait_for_members(member_wait)
    return WriteSession(
        streams=streams, client=client, report=report, writers=writers, pipeline=pipeline, replay=replay,
        state_message=state_message, dry_run=cfg.dry_run, sync_state=state,
        state_gate=state_gate(cfg, state, objects),
    )


def created_members(cfg: ConnectorConfig, objects: Iterable[str]) -> CreatedMembers | None:
    """The members this sync creates, shared by its two writers (``writers/created_members.py``): only when
    the sync writes both objects (and is not a dry run, which creates nobody).
    """
    if cfg.dry_run or not {USER_PROFILE, ACTIVITY_CREDIT} <= set(objects):
        return None
    return CreatedMembers()


def open_state(cfg: ConnectorConfig, clock: Callable[[], float]) -> BucketState | None:
    """The sync state in the bucket (not opened yet), when ``sync_state`` asks for it and the sync writes."""
    if not cfg.sync_state.in_bucket:
        return None
    if cfg.dry_run:
        logger.info("Dry run: the sync state in the bucket is neither read nor written.")
        return None
    if cfg.member_index_path or cfg.ledger_path:
        logger.info(
            "sync_state is bucket: member_index_path and ledger_path are not used; the member index and the ledger "
            "are read from the bucket of object_storage_config and saved there."
        )
    # Imported here: boto3 loads only for syncs that use a bucket.
    from destination_crowdtwist.state.connector import BucketState

    return BucketState(cfg, clock=clock)


def state_gate(cfg: ConnectorConfig, state: BucketState | None, objects: Iterable[str]) -> StateGate | None:
    """What must hold before a state is echoed, beyond the writers' checkpoint (docs/sync-state.md).

    Under ``replay_window`` and ``none`` a replayed credit absent from the ledger may be sent without
    a history read, so every ledger entry a state covers must be in the bucket before it is echoed.
    Under ``every_row`` every such credit is verified: the ledger only spares history reads.
    """
    if state is None or cfg.credit_verification == "every_row" or ACTIVITY_CREDIT not in objects:
        return None
    return StateGate(state.flush, f"the credit ledger could not be saved to the bucket of object_storage_config "
                                  f"({cfg.object_storage_config.location if cfg.object_storage_config else ''})")


def make_member_wait(
    cfg: ConnectorConfig, streams: Iterable[StreamContext], replay: ReplayPolicy
) -> MemberWait | None:
    """Rows may wait for members created later in the sync (sync/deferral.py), unless that is unsafe."""
    if cfg.dry_run:
        return None  # a dry run creates no member: waiting would change nothing
    streams = list(streams)
    if replay.barrier_at_state():
        objects = {stream.object_name for stream in streams}
        if {USER_PROFILE, ACTIVITY_CREDIT} <= objects:
            logger.warning(
                f"credit_verification={cfg.credit_verification} puts a barrier at every state, so credits "
                "whose member does not exist yet cannot wait for the member stream of this sync: they are "
                "rejected as not found. Sync the members first (or in an earlier sync), or use "
                "credit_verification=every_row."
            )
        return None
    return MemberWait(streams)
