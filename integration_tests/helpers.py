"""Shared builders for driving ``DestinationCrowdtwist().write`` in-process in integration tests.

    msgs = [record({"user_id": "a@x.com", "activity_id": "1001"}), state(1)]
    out = run_write(config, catalog("append"), msgs)   # the echoed STATE messages

Records and states are built as the platform sends them (states carry an ``id``). ``run_write``
returns the echoed states; a sync-stopping error propagates as ``AirbyteTracedException``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from airbyte_cdk.models import AirbyteMessage, ConfiguredAirbyteCatalog
from airbyte_cdk.models.airbyte_protocol_serializers import ConfiguredAirbyteCatalogSerializer

from destination_crowdtwist import DestinationCrowdtwist
from destination_crowdtwist.cdk_adapter import load_message

DEFAULT_STREAM = "credits"


def catalog(
    mode: str,
    name: str = DEFAULT_STREAM,
    primary_key: Sequence[Sequence[str]] | None = None,
    *,
    namespace: str | None = None,
    extra_streams: Sequence[str] = (),
) -> ConfiguredAirbyteCatalog:
    """A configured catalog with one stream ``name`` (plus ``extra_streams``) in destination sync ``mode``."""
    streams = []
    for stream_name in (name, *extra_streams):
        stream: dict[str, Any] = {
            "name": stream_name,
            "json_schema": {"type": "object"},
            "supported_sync_modes": ["full_refresh", "incremental"],
        }
        if namespace is not None:
            stream["namespace"] = namespace
        configured: dict[str, Any] = {
            "stream": stream,
            "sync_mode": "incremental",
            "destination_sync_mode": mode,
        }
        if primary_key:
            configured["primary_key"] = [list(path) for path in primary_key]
        streams.append(configured)
    return ConfiguredAirbyteCatalogSerializer.load({"streams": streams})


def record(data: Mapping[str, Any], stream: str = DEFAULT_STREAM, namespace: str | None = None) -> AirbyteMessage:
    """A RECORD message."""
    body: dict[str, Any] = {"stream": stream, "data": dict(data), "emitted_at": int(time.time() * 1000)}
    if namespace is not None:
        body["namespace"] = namespace
    return load_message({"type": "RECORD", "record": body})


def state(
    id: int,  # mirrors the protocol field name
    stream: str | None = DEFAULT_STREAM,
    *,
    data: Mapping[str, Any] | None = None,
    namespace: str | None = None,
) -> AirbyteMessage:
    """A STREAM state for ``stream`` (a GLOBAL state when ``stream`` is None) carrying the platform ``id``."""
    payload = dict(data) if data is not None else {"cursor": id}
    if stream is None:
        body: dict[str, Any] = {"type": "GLOBAL", "global": {"shared_state": payload, "stream_states": []}}
    else:
        descriptor: dict[str, Any] = {"name": stream}
        if namespace is not None:
            descriptor["namespace"] = namespace
        body = {"type": "STREAM", "stream": {"stream_descriptor": descriptor, "stream_state": payload}}
    body["id"] = id
    return load_message({"type": "STATE", "state": body})


def run_write(
    config: Mapping[str, Any], configured_catalog: ConfiguredAirbyteCatalog, messages: Iterable[AirbyteMessage]
) -> list[AirbyteMessage]:
    """Run one ``write`` to the end and return every message it yielded (the echoed states)."""
    return list(DestinationCrowdtwist().write(config, configured_catalog, iter(messages)))


def run_write_until_error(
    config: Mapping[str, Any], configured_catalog: ConfiguredAirbyteCatalog, messages: Iterable[AirbyteMessage]
) -> tuple[list[AirbyteMessage], BaseException | None]:
    """Run one ``write``; return the messages yielded before it stopped and the error that stopped it."""
    out: list[AirbyteMessage] = []
    try:
        for message in DestinationCrowdtwist().write(config, configured_catalog, iter(messages)):
            out.append(message)
    except Exception as exc:
        return out, exc
    return out, None


def state_id(message: AirbyteMessage) -> int | None:
    """The platform ``id`` of a state message (a field the CDK's model keeps but does not declare), else None."""
    return getattr(message.state, "id", None)


def state_ids(messages: Iterable[AirbyteMessage]) -> list[int | None]:
    """The ``id`` of every echoed state, in order."""
    return [state_id(m) for m in messages if m.state is not None]


def cursor(message: AirbyteMessage) -> Any:
    """The ``cursor`` in a STREAM state's ``stream_state`` (a free-form blob in the CDK's model)."""
    assert message.state is not None and message.state.stream is not None
    return getattr(message.state.stream.stream_state, "cursor", None)


def stats(message: AirbyteMessage) -> tuple[float | None, float | None]:
    """(recordCount, rejectedRecordCount) of an echoed state."""
    assert message.state is not None
    dest = message.state.destinationStats
    assert dest is not None
    return dest.recordCount, getattr(dest, "rejectedRecordCount", None)


class StopInput(Exception):
    """Raised from an input iterator to simulate the platform killing the sync mid-stream."""


def interrupted(
    messages: Iterable[AirbyteMessage], after: int, before_raise: Callable[[], None] | None = None
) -> Iterator[AirbyteMessage]:
    """Yield the first ``after`` messages, then raise :class:`StopInput` (an attempt dying mid-input).

    ``before_raise`` runs just before the error, e.g. to wait until the rows already handed over
    were sent (the destination abandons rows that no worker started when its input fails).
    """
    for index, message in enumerate(messages):
        if index >= after:
            if before_raise is not None:
                before_raise()
            raise StopInput(f"input interrupted after {after} messages")
        yield message


def credit_config(sandbox: Any, *, hmac: bool = False, **extra: Any) -> dict[str, Any]:
    """An Activity Credit config for a running sandbox: fast (small queue delay, quiet progress).

    ``hmac=True`` signs with the sandbox's HMAC keys (the sandbox must be in HMAC mode).
    """
    options = sandbox.options
    credentials: dict[str, Any]
    if hmac:
        credentials = {
            "auth_type": "hmac",
            "public_key": options.hmac_public_key,
            "private_key": options.hmac_private_key,
        }
    else:
        credentials = {"auth_type": "api_key", "api_key": options.api_key}
    config: dict[str, Any] = {
        "api_base_url": sandbox.base_url,
        "credentials": credentials,
        "object_type": "activity_credit",
        "user_identifier_type": "email",
        "award_queue_delay_seconds": 0.2,
        "progress_interval_seconds": 0,
        "max_concurrency": 4,
    }
    config.update(extra)
    return config


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` every few milliseconds; fail the test if it is not true within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def profile_config(sandbox: Any, **extra: Any) -> dict[str, Any]:
    """A config for a running sandbox with the connector's defaults otherwise (max_concurrency 256,
    9,000 requests/minute), quiet progress unless ``extra`` says otherwise."""
    credentials = {"auth_type": "api_key", "api_key": sandbox.options.api_key}
    return {"api_base_url": sandbox.base_url, "credentials": credentials, "progress_interval_seconds": 0, **extra}


def seeded_sandbox(factory: Callable[..., Any], members: int, **knobs: Any) -> Any:
    """A sandbox holding ``members`` members m0@example.com, m1@example.com, ... (for update streams)."""
    seed = [{"email_address": f"m{i}@example.com", "first_name": "Seed", "last_name": "Seed"} for i in range(members)]
    return factory(members=tuple(seed), **knobs)
