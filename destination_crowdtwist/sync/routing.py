"""Routing: which CrowdTwist object each configured stream writes to, and how it finds members.

Two ways to configure a stream, both in one catalog if need be:

* **Data activation** (the stream has ``destination_object_name``): the object and sync mode must
  be an operation of ``writers/objects.py`` (what ``discover`` declared); the stream's
  ``primary_key``, when set, must be one single-field matching key, and that field of each record
  identifies the member (``email_address`` means ``id_type=email``). Without a primary key the
  classic ``user_id`` field and ``user_identifier_type`` apply.
* **Classic** (no ``destination_object_name``): the config's ``object_type``, the ``user_id`` field
  and ``user_identifier_type``; the primary key only feeds the credit dedupe hash, as in 0.1. The
  destination sync mode chooses the operation, ``soft_delete`` (remove members) included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.config import ConnectorConfig
from destination_crowdtwist.records.mapping import names_stream
from destination_crowdtwist.writers.base import StreamContext
from destination_crowdtwist.writers.objects import (
    ACTIVITY_CREDIT,
    OBJECT_NAMES,
    OPERATIONS,
    key_id_type,
    operation,
)

_CLASSIC_MODES = {"append_dedup": "upsert", "append": "insert", "update": "update", "soft_delete": "delete"}


def route_stream(
    *,
    namespace: str | None,
    name: str,
    sync_mode: str,
    object_name: str | None,
    primary_key: list[list[str]] | None,
    cfg: ConnectorConfig,
    sync_id: int | None = None,
    generation_id: int | None = None,
) -> StreamContext:
    """The writer-side view of one configured stream; raises ``ConfigError`` naming what to fix."""
    ctx = _route(namespace, name, sync_mode, object_name, primary_key, cfg)
    return dataclasses.replace(ctx, sync_id=sync_id, generation_id=generation_id)


def _route(
    namespace: str | None,
    name: str,
    sync_mode: str,
    object_name: str | None,
    primary_key: list[list[str]] | None,
    cfg: ConnectorConfig,
) -> StreamContext:
    pk = tuple(tuple(path) for path in (primary_key or []))
    label = f"{namespace}.{name}" if namespace else name
    if object_name is None:
        return _classic(namespace, name, label, sync_mode, pk, cfg)
    if object_name not in OBJECT_NAMES:
        raise ConfigError(
            f"Stream {label!r} is mapped to the unknown CrowdTwist object {object_name!r}. "
            f"Known objects: {', '.join(OBJECT_NAMES)}."
        )
    op = operation(object_name, sync_mode)
    if op is None:
        modes = [o.sync_mode for o in OPERATIONS if o.object_name == object_name]
        raise ConfigError(
            f"Stream {label!r} uses sync mode {sync_mode!r}, which object {object_name!r} does not support. "
            f"Choose one of: {', '.join(modes)}."
        )
    if not pk:
        return StreamContext(namespace, name, sync_mode, object_name, "user_id", cfg.user_identifier_type, pk)
    if len(pk) != 1 or len(pk[0]) != 1:
        shown = " + ".join(".".join(path) for path in pk)
        raise ConfigError(
            f"Stream {label!r} has the matching key {shown!r}; CrowdTwist finds a member by one field. "
            f"Choose one of: {', '.join(op.matching_keys)}."
        )
    key = pk[0][0]
    id_type = key_id_type(key)
    if id_type is None or key not in op.matching_keys:
        raise ConfigError(
            f"Stream {label!r} has the matching key {key!r}, which is not a matching key of {object_name} "
            f"({sync_mode}). Choose one of: {', '.join(op.matching_keys)}."
        )
    return StreamContext(namespace, name, sync_mode, object_name, key, id_type, pk)


def _classic(
    namespace: str | None, name: str, label: str, sync_mode: str, pk: tuple[tuple[str, ...], ...],
    cfg: ConnectorConfig,
) -> StreamContext:
    if sync_mode not in _CLASSIC_MODES:
        raise ConfigError(
            f"Stream {label!r} uses destination sync mode {sync_mode!r}, which CrowdTwist cannot support. "
            "Choose append_dedup (upsert), append (insert), update or soft_delete (delete) for this stream."
        )
    if cfg.object_type == ACTIVITY_CREDIT and sync_mode == "soft_delete":
        raise ConfigError(
            f"Stream {label!r} uses sync mode 'soft_delete', which does not apply to Activity Credit (CrowdTwist "
            "has no way to take back a credit through this API). Use object_type user_profile to remove members, "
            "or append for credits."
        )
    if cfg.object_type == ACTIVITY_CREDIT and sync_mode == "update":
        raise ConfigError(
            f"Stream {label!r} uses sync mode 'update', which does not apply to Activity Credit "
            "(a credit is always a new event). Choose append or append_dedup for this stream."
        )
    return StreamContext(namespace, name, sync_mode, cfg.object_type, "user_id", cfg.user_identifier_type, pk)


def unmatched_mapping_streams(cfg: ConnectorConfig, streams: Iterable[StreamContext]) -> list[str]:
    """The streams named by ``field_mapping`` rules that no configured stream matches (a typo, or a
    stream left out of this connection): their rules apply to nothing, which the user should know.
    """
    contexts = list(streams)
    named = dict.fromkeys(rule.stream for rule in cfg.field_mapping if rule.stream is not None)
    return [
        name for name in named
        if not any(names_stream(name, ctx.namespace, ctx.name) for ctx in contexts)
    ]
