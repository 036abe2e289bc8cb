"""Where this connector adapts airbyte-cdk 7.x: every gap of the CDK's ``Destination``, and our fix.

After a CDK upgrade, audit this file: it is the only one that overrides the CDK's methods, patches
its protocol models or writes through its internals. unit_tests/test_cdk_adapter.py has a test per
gap, each showing the CDK's own behaviour too (one that starts failing says a gap closed). Per gap:
what the CDK (7.39) does, why it breaks us, what we do instead (docs/airbyte-protocol-notes.md §1.6, §3.5).

1. **Unflushed output.** ``Destination.run`` ``print``s messages without a flush: unless
   ``PYTHONUNBUFFERED`` is set, echoed states wait in the stdout buffer until exit, and a kill loses
   them. :func:`emit` writes one line and flushes, under the lock of the CDK's log ``PRINT_BUFFER``
   (pending log lines first), so log and protocol lines stay whole and in order while workers log;
   :func:`flush_output` does the same at exit (run.py).
2. **State ids dropped.** The platform adds an ``id`` to each state; the CDK's models lack it, so
   loading drops it, and platform 1.7+ fails ("State message does not contain id").
   :class:`PatchedAirbyteStateMessage` keeps it, in and out.
3. **No ``rejectedRecordCount``.** The CDK's models are protocol 0.17.1; ``destinationStats``'s count of
   rejected rows is 0.18.0. :class:`StateStats` adds it; :func:`state_message` attaches exact counts.
4. **Input that kills the sync.** ``_parse_input_stream`` skips only lines that are not JSON: a JSON
   line that is no valid AirbyteMessage (an unknown ``type``) raises. ``_run_write`` hands the lines
   to ``sync/protocol.parse_messages`` (with :func:`load_message`), which skips unknown types and
   turns unusable RECORD lines into rejected rows, counted in the states.
5. **A buffered stdin.** ``run_cmd`` decodes ``sys.stdin.buffer`` as text: a bad byte costs a whole
   chunk, and a reader blocked in it holds the buffer's lock, so a sync stopping while the source
   still sends is aborted at interpreter exit (SIGABRT) instead of reporting its error. We read bytes
   from the descriptor (``sync/protocol.fd_lines``) and decode line by line.
6. **Config validated by jsonschema.** ``run_cmd`` validates the config against the spec before
   ``check`` (whatever ``check_config_against_spec`` says) and before ``write``: the messages are
   jsonschema's. Ours does not; ``config.parse_config`` reports problems by field.
7. **No ``discover``.** CDK 7.x has ``spec``, ``check`` and ``write`` only, and no
   ``destination_catalog`` in its AirbyteMessage. :meth:`AdaptedDestination.parse_args` adds
   ``discover --config`` (``--help`` lists every command); ``run_cmd`` writes the
   ``DESTINATION_CATALOG`` as plain JSON (:func:`emit_raw`).
8. **Command-line mistakes crash.** No command raises a bare ``Exception`` (a system-error trace, a
   traceback); a wrong or incomplete one exits 2 with argparse's usage on stderr, no protocol
   message. :meth:`AdaptedDestination.run` makes both a config-error trace naming the commands.
9. **Unreadable files crash.** ``read_config`` and ``_run_write`` open the config and catalog bare:
   a missing or malformed file is a system error with a traceback, not a config error. Ours are
   config errors naming the file, never quoting it (it may hold the API key).
10. **No SIGTERM handling.** Python's default ends the process at once: states already safe are never
    echoed, and a SIGTERM right after the answer (PyAirbyte sends one) turns success into exit -15.
    :meth:`AdaptedDestination.run` installs ``sync/termination.Termination``: before the answer a
    SIGTERM is thrown into ``write`` where it yielded (it drains, echoes what is safe and fails with
    a trace); once the answer is out it exits 0.

Also tied to the CDK's output, outside this file: ``run.spec_line`` prints ``spec`` without importing
the CDK; unit_tests/test_spec_fast_path.py compares its bytes with the CDK's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from abc import abstractmethod
from collections.abc import Generator, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from airbyte_cdk.destinations import Destination
from airbyte_cdk.exception_handler import init_uncaught_exception_handler
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import (
    AirbyteMessage,
    AirbyteStateMessage,
    AirbyteStateStats,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    Type,
)
from airbyte_cdk.models.airbyte_protocol_serializers import AirbyteMessageSerializer, custom_type_resolver
from airbyte_cdk.utils.airbyte_secrets_utils import get_secrets, update_secrets
from serpyco_rs import Serializer

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.discover import catalog_message
from destination_crowdtwist.sync.checkpoint import ReleasedState
from destination_crowdtwist.sync.protocol import BadInput, fd_lines, parse_messages, traced
from destination_crowdtwist.sync.termination import Terminated, Termination

logger = logging.getLogger("airbyte")

# -- gaps 2 and 3: the protocol models --------------------------------------------------------------


@dataclass
class StateStats(AirbyteStateStats):
    """State stats with the protocol 0.18 ``rejectedRecordCount``."""

    rejectedRecordCount: float | None = None


@dataclass
class PatchedAirbyteStateMessage(AirbyteStateMessage):
    """A state message that keeps the platform's checkpoint ``id``."""

    destinationStats: StateStats | None = None
    id: int | None = None


@dataclass
class PatchedAirbyteMessage(AirbyteMessage):
    """An AirbyteMessage whose state keeps ``id`` and ``rejectedRecordCount``."""

    state: PatchedAirbyteStateMessage | None = None


PatchedMessageSerializer: Serializer[PatchedAirbyteMessage] = Serializer(
    PatchedAirbyteMessage, omit_none=True, custom_type_resolver=custom_type_resolver
)


def load_message(obj: dict[str, Any]) -> PatchedAirbyteMessage:
    """Deserialize one message object (raises serpyco's SchemaValidationError, a ValueError, when malformed)."""
    return PatchedMessageSerializer.load(obj)


def dump_message(message: AirbyteMessage) -> str:
    """Serialize a message to one JSON line (without the newline)."""
    if isinstance(message, PatchedAirbyteMessage):
        return orjson.dumps(PatchedMessageSerializer.dump(message)).decode()
    return orjson.dumps(AirbyteMessageSerializer.dump(message)).decode()


def state_message(item: ReleasedState[Any]) -> AirbyteMessage:
    """The state to echo, with the platform's id kept and exact ``destinationStats`` attached."""
    state = item.state.state
    stats = StateStats(recordCount=float(item.record_count), rejectedRecordCount=float(item.rejected_count))
    patched = PatchedAirbyteStateMessage(
        type=state.type, stream=state.stream, global_=state.global_, data=state.data,
        sourceStats=state.sourceStats, destinationStats=stats, id=getattr(state, "id", None),
    )
    return PatchedAirbyteMessage(type=Type.STATE, state=patched)


# -- gap 1: the output ------------------------------------------------------------------------------


def emit(message: AirbyteMessage) -> None:
    """Write one protocol message to stdout as a single line, then flush (see gap 1)."""
    _write_line(dump_message(message))


def emit_raw(message: Mapping[str, Any]) -> None:
    """Write a protocol message given as JSON, like :func:`emit`: for messages the CDK's models cannot
    carry (the ``DESTINATION_CATALOG`` of ``discover``, gap 7).
    """
    _write_line(orjson.dumps(message).decode())


def _write_line(text: str) -> None:
    with PRINT_BUFFER.lock:
        PRINT_BUFFER.flush()
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def flush_output() -> None:
    """Flush pending log lines, stdout and stderr, under the PrintBuffer's lock (as :func:`emit` writes)."""
    with PRINT_BUFFER.lock:
        for flush in (PRINT_BUFFER.flush, sys.stdout.flush, sys.stderr.flush):
            # A closed pipe: the reader is gone, nothing more can be delivered.
            with contextlib.suppress(OSError, ValueError):
                flush()


# -- gaps 7 and 8: the command line ------------------------------------------------------------------

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


def usage_problem(args: list[str]) -> str:
    """What is wrong with a command line argparse refused, and what to type instead."""
    every = "; ".join(f"{name} {needs}".rstrip() for name, (needs, _) in COMMANDS.items())
    if not args:
        return f"No command given. The commands are: {every}. See --help."
    command = args[0]
    if command not in COMMANDS:
        # Not echoed: a mistyped command line may hold a path or a secret.
        return f"Unknown command. The commands are: {every}. See --help."
    return f"The {command} command needs {COMMANDS[command][0]}. See {command} --help."


# -- gap 10: SIGTERM ----------------------------------------------------------------------------------

#: What a SIGTERM means now (sync/termination.py): stop the command, or exit 0 once it has answered.
TERMINATION = Termination()


def _handle_sigterm() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be installed from the main thread (tests run write() elsewhere)
    # Before the answer a SIGTERM raises Terminated (and a second one ends the process at once);
    # after it, the process exits 0 (sync/termination.py).
    TERMINATION.restore_default = lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, TERMINATION.on_sigterm)


# -- the Destination methods ----------------------------------------------------------------------------


class AdaptedDestination(Destination):
    """The CDK's ``Destination`` with the gaps above fixed; subclasses add ``discover`` to its methods."""

    # Gap 6: run_cmd below never validates against the spec; False keeps the CDK's from doing it too.
    check_config_against_spec = False

    @abstractmethod
    def discover(self, logger: logging.Logger, config: Mapping[str, Any]) -> dict[str, Any]:
        """The data-activation ``DestinationCatalog`` (as JSON); raises a traced error on failure."""

    @abstractmethod
    def write(self, config: Mapping[str, Any], configured_catalog: ConfiguredAirbyteCatalog,
              input_messages: Iterable[AirbyteMessage | BadInput]) -> Iterable[AirbyteMessage]:
        """Write the input; unusable input lines arrive as ``BadInput`` rows (gap 4)."""

    def run(self, args: list[str]) -> None:
        """Run a command, writing each message as one flushed line (gaps 1, 8, 10)."""
        init_uncaught_exception_handler(logger)
        _handle_sigterm()
        try:
            parsed_args = self.parse_args(args)
        except SystemExit as exc:
            if exc.code in (0, None):  # --help
                raise
            usage_error = True
        except Exception:  # noqa: BLE001 - whatever parse_args raises, the user gets the commands
            usage_error = True
        else:
            usage_error = False
        if usage_error:
            raise traced(ConfigError(usage_problem(args))) from None
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

    def parse_args(self, args: list[str]) -> argparse.Namespace:
        """The CDK's commands (spec, check, write) plus ``discover --config``, every one in ``--help``
        (gap 7; ``replay-rejects`` runs before this, in run.py).
        """
        namespace = command_parser().parse_args(args)
        if not namespace.command:
            raise ValueError("no command")
        return namespace

    def run_cmd(self, parsed_args: argparse.Namespace) -> Iterable[AirbyteMessage]:
        """Like the CDK's, without jsonschema (gap 6), with ``discover`` (gap 7) and stdin read as bytes
        from its descriptor (gap 5).
        """
        cmd = parsed_args.command
        spec = self.spec(logger)
        if cmd == "spec":
            yield AirbyteMessage(type=Type.SPEC, spec=spec)
            return
        config = self.read_config(config_path=parsed_args.config)
        # Register secrets before anything can print them (a config error may quote config values).
        update_secrets(get_secrets(spec.connectionSpecification, config))
        if cmd == "discover":
            catalog = catalog_message(self.discover(logger, config))
            with TERMINATION.answering():
                emit_raw(catalog)
        elif cmd == "check":
            yield self._run_check(config=config)
        elif cmd == "write":
            yield from self._run_write(
                config=config, configured_catalog_path=parsed_args.catalog, input_stream=self._stdin()
            )

    @staticmethod
    def _stdin() -> Iterator[bytes]:
        # Bytes, split into lines here and decoded one line at a time by parse_messages: a bad byte
        # then costs one row, not the rest of an 8 KB decoding chunk (and not every replay). Read from
        # the descriptor, not sys.stdin.buffer: see fd_lines (an early stop must not abort the process).
        return fd_lines(sys.stdin.fileno())

    @staticmethod
    def read_config(config_path: str) -> MutableMapping[str, Any]:
        """The config file as a JSON object; a missing or malformed file is a config error (gap 9)."""
        return read_json_object(config_path, "configuration")

    def _run_write(
        self, config: Mapping[str, Any], configured_catalog_path: str, input_stream: Any
    ) -> Iterable[AirbyteMessage]:
        """Like the CDK's, but a bad catalog file is a config error (gap 9) and input lines are parsed
        by ``parse_messages`` (gap 4).
        """
        raw = read_json_object(configured_catalog_path, "configured catalog")
        try:
            catalog = ConfiguredAirbyteCatalogSerializer.load(raw)
        except Exception as exc:  # noqa: BLE001 - serpyco raises several types for a bad catalog
            raise traced(ConfigError(
                f"The configured catalog {configured_catalog_path} is not a valid Airbyte catalog "
                f"({type(exc).__name__})."
            )) from None
        logger.info("Begin writing to the destination...")
        messages = parse_messages(input_stream, load_message)
        yield from self.write(config=config, configured_catalog=catalog, input_messages=messages)
        logger.info("Writing complete.")


def _as_generator(items: Iterable[AirbyteMessage]) -> Generator[AirbyteMessage, None, None]:
    yield from items


def read_json_object(path: str, what: str) -> dict[str, Any]:
    """The JSON object in the file ``path`` (the ``what`` file, for messages); else a traced config error."""
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
