"""Typed connector configuration, validated against spec.json.

spec.json is the one definition of every setting: its name, type, enum, default, range, title,
description and secrecy are written there and nowhere else. A config is read in four steps:

1. :func:`~destination_crowdtwist.config.validation.normalise`: nulls and blank text mean "not
   given", what is not given takes the spec default, and what a hand-written config may leave out
   (``auth_type``, ``storage_type``) is inferred;
2. :func:`~destination_crowdtwist.config.checks.normalize_base_url`: the base URL, first, because
   its rules say more than the spec's pattern;
3. :func:`~destination_crowdtwist.config.validation.validate`: JSON Schema (Draft 7, as Airbyte
   validates it) against spec.json; the first error becomes a ConfigError naming the field;
4. :func:`~destination_crowdtwist.config.spec.build`: the frozen :class:`ConnectorConfig`, each
   field in the Python form of its property, with the rules JSON Schema cannot express (config/checks.py,
   config/storage.py).

Every ConfigError names the field and what to fix, and never echoes a secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.config import checks
from destination_crowdtwist.config.checks import normalize_base_url
from destination_crowdtwist.config.model import (
    ApiKeyCredentials,
    CompressionType,
    ConnectorConfig,
    Credentials,
    CreditVerification,
    DeleteBehaviour,
    Flattening,
    HmacCredentials,
    NullValues,
    ObjectType,
    S3Storage,
    StorageFormat,
    SyncState,
    SyncStateStorage,
    UnmappedFields,
    UpsertStrategy,
)
from destination_crowdtwist.config.spec import INTERNAL_FIELDS, build, connection_schema, load_spec
from destination_crowdtwist.config.storage import FILE_NAME_VARIABLES, PATH_VARIABLES, s3_storage, storage_gaps
from destination_crowdtwist.config.validation import Gaps, normalise, validate
from destination_crowdtwist.records.identifiers import ID_TYPES, IdType

__all__ = [
    "FILE_NAME_VARIABLES",
    "ID_TYPES",
    "INTERNAL_FIELDS",
    "PATH_VARIABLES",
    "ApiKeyCredentials",
    "CompressionType",
    "ConnectorConfig",
    "Credentials",
    "CreditVerification",
    "DeleteBehaviour",
    "Flattening",
    "HmacCredentials",
    "IdType",
    "NullValues",
    "ObjectType",
    "S3Storage",
    "StorageFormat",
    "SyncState",
    "SyncStateStorage",
    "UnmappedFields",
    "UpsertStrategy",
    "load_spec",
    "normalize_base_url",
    "parse_config",
]

# What a hand-written config may leave out of a oneOf block, by the block's path.
_GAPS: Gaps = {"credentials": checks.credentials_gaps, "object_storage_config": storage_gaps}

# The settings whose Python form is more than their JSON value (the others: see spec.python_value).
_CHECKS: Mapping[str, Callable[[Any], Any]] = {
    "credentials": checks.credentials,
    "field_mapping": checks.field_mapping,
    "custom_attributes": checks.custom_attributes,
    "object_storage_config": s3_storage,
    "sync_state": checks.sync_state,
}


def parse_config(raw: Mapping[str, Any]) -> ConnectorConfig:
    """Parse and validate the connector configuration.

    Unknown keys are ignored (the spec allows additional properties); absent or null ones take the
    spec default.

    Raises:
        ConfigError: with a message naming the field and what to fix.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("the configuration must be a JSON object")
    schema = connection_schema()
    data = normalise(raw, schema, _GAPS)
    data["api_base_url"] = normalize_base_url(data.get("api_base_url"))
    validate(data)
    config: ConnectorConfig = build(ConnectorConfig, schema["properties"], data, _CHECKS)
    checks.state_bucket(config)
    return config
