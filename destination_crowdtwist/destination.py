"""The destination: ``spec``, ``check``, ``write`` and (for data activation) ``discover``.

``write`` parses the config, refuses sync modes CrowdTwist cannot honour, builds one writer for the
configured object type and drives the :class:`~destination_crowdtwist.sync.pipeline.Pipeline`: records go
to the worker pool, states come back out only when everything before them has settled.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Generator, Iterable, Mapping, MutableMapping
from typing import Any

from airbyte_cdk.destinations import Destination
from airbyte_cdk.exception_handler import init_uncaught_exception_handler
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    ConfiguredAirbyteCatalog,
    Status,
    Type,
)
from airbyte_cdk.utils.airbyte_secrets_utils import get_secrets, update_secrets

from destination_crowdtwist.api.errors import ConfigError, CrowdTwistError, TransientError
from destination_crowdtwist.config import ConnectorConfig, parse_config
from destination_crowdtwist.discover import catalog_message, discover_catalog, read_active_activities
from destination_crowdtwist.sync.checkpoint import ReleasedState, StreamKey
from destination_crowdtwist.sync.protocol import (
    BadInput,
    PatchedAirbyteMessage,
    PatchedAirbyteStateMessage,
    StateStats,
    emit,
    emit_raw,
    fd_lines,
    parse_messages,
    traced,
)
from destination_crowdtwist.sync.routing import route_stream, unmatched_mapping_streams
from destination_crowdtwist.sync.termination import Terminated, Termination
from destination_crowdtwist.wiring import open_session
from destination_crowdtwist.writers.activities import full_refresh_warning, unsafe_policy_warning
from destination_crowdtwist.writers.base import StreamContext

logger = logging.getLogger("airbyte")

#: What a SIGTERM means now (sync/termination.py): stop the command, or exit 0 once it has answered.
TERMINATION = Termination()


#: The commands and what each needs, for ``--help`` and for the error of an incomplete command line.
COMMANDS: dict[str, tuple[str, str]] = {
    "spec": ("", "print the configuration specification (SPEC)"),
    "check": ("--config CONFIG", "check the configuration and the connection to CrowdTwist"),
    "discover": ("--config CONFIG", "print the CrowdTwist objects a connection can map to (DESTINATION_CATALOG)"),
    "write": ("--config CONFIG --catalog CATALOG", "write the records read on standard input to CrowdTwist"),
    "replay-rejects": ("FILE [FILE ...]", "print stored rejected rows as records for write (see its --help)"),
}


def command_parser() -> argparse.ArgumentParser:
    """The command line of every command, so that ``--help`` lists them all."""
    parser = argparse.ArgumentParser(prog="destination-crowdtwist",
                                     description="Airbyte destination for Oracle CrowdTwist.")
    commands = parser.add_subparsers(title="commands", dest="command")
    for name, (_, text) in COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text)
        if name == "replay-rejects":
            # Handled before this parser (run.py); listed here for --help.
            sub.add_argument("files", nargs="*", help="rejected-rows files (JSONL, optionally .gz)")
            continue
        if name == "spec":
            continue
        required = sub.add_argument_group("required named arguments")
        required.add_argument("--config", type=str, required=True, help="path to the JSON configuration file")
        if name == "write":
            required.add_argument("--catalog", type=str, required=True, help="path to the configured catalog JSON file")
    return parser


def _usage_problem(args: list[str]) -> str:
    """What is wrong with a command line argparse refused, and what to type instead."""
    every = "; ".join(f"{name} {needs}".rstrip() for name, (needs, _) in COMMANDS.items())
    if not args:
        return f"No command given. The commands are: {every}. See --help."
    command = args[0]
    if command not in COMMANDS:
        # Not echoed: a mistyped command line may hold a path or a secret.
        return f"Unknown command. The commands are: {every}. See --help."
    return f"The {command} command needs {COMMANDS[command][0]}. See {command} --help."


def _as_generator(items: Iterable[AirbyteMessage]) -> Generator[AirbyteMessage, None, None]:
    yield from items


def _handle_sigterm() -> None:
    import signal
    import threading as _threading

    if _threading.current_thread() is not _threading.main_thread():
        return  # signal handlers can only be installed from the main thread (tests run write() elsewhere)

    # Before the answer a SIGTERM raises Terminated (and a second one ends the process at once);
    # after it, the process exits 0 (sync/termination.py).
    TERMINATION.restore_default = lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, TERMINATION.on_sigterm)


class DestinationCrowdtwist(Destination):
    """Airbyte destination for Oracle CrowdTwist: member profiles and activity credits."""

    # Config errors are reported by parse_config with field names (see run_cmd below).
    check_config_against_spec = False

    def __init__(self, *, index_clock: Callable[[], float] = time.time) -> None:
        """``index_clock``: epoch seconds by which the member index dates and ages its entries
        (tests inject a fake one to let days pass between syncs).
        """
        self._index_clock = index_clock

    # -- entry point (fixes CDK 7.x pitfalls; see protocol.py) ------------------------------------

    def run(self, args: list[str]) -> None:
        """Run a command, writing each message as one flushed line."""
        init_uncaught_exception_handler(logger)
        _handle_sigterm()
        try:
            parsed_args = self.parse_args(args)
        except SystemExit as exc:
            if exc.code in (0, None):  # --help
                raise
            usage_error = True
        except Exception:  # noqa: BLE001 - the CDK raises a bare Exception("No command entered.")
            usage_error = True
        else:
            usage_error = False
        if usage_error:
            raise traced(ConfigError(_usage_problem(args))) from None
        messages = _as_generator(self.run_cmd(parsed_args))
        # spec, check and discover answer with one message: once it is written, a SIGTERM exits 0.
        answers = parsed_args.command != "write"
        interrupted: Terminated | None = None
        while True:
            try:
                # A SIGTERM that lands while a message is being written is handed to the sync at the
                # point where it yielded, so it still drains and echoes what is safe.
                message = messages.throw(interrupted) if interrupted is not None else next(messages)
            except StopIteration:
                TERMINATION.finished()  # the output is complete: a SIGTERM from here on exits 0
                return
            interrupted = None
            try:
                if answers:
                    with TERMINATION.answering():
                        emit(message)
                else:
                    emit(message)
            except Terminated as exc:
                interrupted = exc

    @staticmethod
    def read_config(config_path: str) -> MutableMapping[str, Any]:
        """The config file as a JSON object; a missing or malformed file is a config error, not a crash."""
        return _read_json_object(config_path, "configuration")

    def _run_write(
        self, config: Mapping[str, Any], configured_catalog_path: str, input_stream: Any
    ) -> Iterable[AirbyteMessage]:
        """Like the CDK's, but a missing or malformed catalog file is a config error, not a crash."""
        from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

        raw = _read_json_object(configured_catalog_path, "configured catalog")
        try:
            catalog = ConfiguredAirbyteCatalogSerializer.load(raw)
        except Exception as exc:  # noqa: BLE001 - serpyco raises several types for a bad catalog
            raise traced(ConfigError(
                f"The configured catalog {configured_catalog_path} is not a valid Airbyte catalog "
                f"({type(exc).__name__})."
            )) from None
        logger.info("Begin writing to the destination...")
        yield from self.write(config=config, configured_catalog=catalog, input_messages=parse_messages(input_stream))
        logger.info("Writing complete.")

    def parse_args(self, args: list[str]) -> argparse.Namespace:
        """The CDK's commands (spec, check, write), plus ``discover --config`` (data activation), which
        CDK 7.x lacks, with every command in ``--help`` (``replay-rejects`` runs before this, in run.py).
        """
        namespace = command_parser().parse_args(args)
        if not namespace.command:
            raise ValueError("no command")
        return namespace

    def run_cmd(self, parsed_args: argparse.Namespace) -> Iterable[AirbyteMessage]:
        """Like the CDK's, but config problems come from parse_config, which names the field to fix."""
        cmd = parsed_args.command
        spec = self.spec(logger)
        if cmd == "spec":
            yield AirbyteMessage(type=Type.SPEC, spec=spec)
            return
        config = self.read_config(config_path=parsed_args.config)
        # Register secrets before anything can print them (a config error may quote config values).
        update_secrets(get_secrets(spec.connectionSpecification, config))
        if cmd == "discover":
            # The CDK's AirbyteMessage has no destination_catalog field: written as plain JSON.
            catalog = catalog_message(self.discover(logger, config))
            with TERMINATION.answering():
                emit_raw(catalog)
        elif cmd == "check":
            yield self._run_check(config=config)
        elif cmd == "write":
            yield from self._run_write(
                config=config,
                configured_catalog_path=parsed_args.catalog,
                input_stream=self._stdin(),
            )

    @staticmethod
    def _stdin() -> Any:
        import sys

        # Bytes, split into lines here and decoded one line at a time by parse_messages: a bad byte
        # then costs one row, not the rest of an 8 KB decoding chunk (and not every replay). Read from
        # the descriptor, not sys.stdin.buffer: see fd_lines (an early stop must not abort the process).
        return fd_lines(sys.stdin.fileno())

    # -- check --------------------------------------------------------------------------------

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        """Validate the config, call ``GET /v2/activities`` and, when ``object_storage_config`` is S3, write
        and delete a probe object in the bucket; FAILED messages say what to fix.
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
            from destination_crowdtwist.sync.object_storage import probe  # boto3 loads only when a bucket is set

            problem = probe(storage)
            if problem is not None:
                return AirbyteConnectionStatus(status=Status.FAILED, message=problem)
            message += f" Rejected rows can be stored in {storage.location}."
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
            session = open_session(cfg, streams, state_message=_with_stats, index_clock=self._index_clock)
        except CrowdTwistError as exc:
            raise traced(exc) from None
        yield from session.run(input_messages)



def _with_stats(item: ReleasedState[Any]) -> AirbyteMessage:
    """The state to echo, with the platform's id kept and exact destinationStats attached."""
    msg = item.state
    state = msg.state
    stats = StateStats(recordCount=float(item.record_count), rejectedRecordCount=float(item.rejected_count))
    patched = PatchedAirbyteStateMessage(
        type=state.type,
        stream=state.stream,
        global_=state.global_,
        data=state.data,
        sourceStats=state.sourceStats,
        destinationStats=stats,
        id=getattr(state, "id", None),
    )
    return PatchedAirbyteMessage(type=Type.STATE, state=patched)


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


def _read_json_object(path: str, what: str) -> dict[str, Any]:
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except OSError as exc:
        raise traced(ConfigError(f"The {what} file {path} cannot be read ({exc.strerror}).")) from None
    except ValueError as exc:
        # Never quote the file: it may hold the API key.
        raise traced(ConfigError(
            f"The {what} file {path} is not valid JSON ({type(exc).__name__} at {getattr(exc, 'lineno', '?')}:"
            f"{getattr(exc, 'colno', '?')})."
        )) from None
    if not isinstance(value, dict):
        raise traced(ConfigError(f"The {what} file {path} must hold a JSON object, not {type(value).__name__}."))
    return value


def _transient_check_message(exc: TransientError) -> str:
    if exc.status == 503:
        return (
            "CrowdTwist is unavailable (HTTP 503, probably a maintenance window). Try the check again later. "
            f"Details: {exc}"
        )
    if exc.status == 429:
        return (
            "CrowdTwist is rate limiting this program right now (HTTP 429); other integrations may be using the "
            f"request budget. Try again in a minute. Details: {exc}"
        )
    return str(exc)


__all__ = ["DestinationCrowdtwist"]
