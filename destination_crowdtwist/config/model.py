"""The typed configuration a sync reads: :class:`ConnectorConfig`, :class:`S3Storage`, the credentials.

Each field is declared once, as a name and a Python type; its default is read from the spec property
of the same name (:func:`~destination_crowdtwist.config.spec.spec_default`), and its meaning is that
property's description (and docs/crowdtwist.md, Configuration). The ``Literal`` types below are the
Python side of the spec's enums, kept because mypy (with ``strict_equality``) then catches a typo such
as ``cfg.object_type == "activity_credits"``; unit_tests/test_config.py checks each equals its enum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from destination_crowdtwist.config.spec import connection_schema, flat_properties, s3_option, spec_default
from destination_crowdtwist.records.identifiers import IdType
from destination_crowdtwist.records.mapping import FieldMapping, MappingOptions

ObjectType = Literal["user_profile", "activity_credit"]
UnmappedFields = Literal["custom_data", "drop"]
NullValues = Literal["skip", "send"]
CreditVerification = Literal["every_row", "replay_window", "none"]
UpsertStrategy = Literal["auto", "update_first", "create_first"]
DeleteBehaviour = Literal["deactivate", "deactivate_and_remove_points", "erase"]
# object_storage_config (S3): the format_type, flattening and compression_type values.
StorageFormat = Literal["CSV", "JSONL"]
Flattening = Literal["No flattening", "Root level flattening"]
CompressionType = Literal["No Compression", "GZIP"]
# sync_state.storage: where the member index and the credit ledger live between syncs.
SyncStateStorage = Literal["none", "bucket"]


def _config_properties() -> dict[str, Any]:
    return connection_schema()["properties"]  # type: ignore[no-any-return]


def _s3_properties() -> dict[str, Any]:
    return flat_properties(s3_option())


def _sync_state_properties() -> dict[str, Any]:
    return _config_properties()["sync_state"]["properties"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ApiKeyCredentials:
    """API-key authentication: the key travels as the `api_key` query parameter."""

    api_key: str = field(repr=False)

    def __repr__(self) -> str:
        return "ApiKeyCredentials(api_key=****)"


@dataclass(frozen=True)
class HmacCredentials:
    """HMAC-SHA256 request signing with a public/private key pair."""

    public_key: str
    private_key: str = field(repr=False)

    def __repr__(self) -> str:
        return f"HmacCredentials(public_key={self.public_key!r}, private_key=****)"


Credentials = ApiKeyCredentials | HmacCredentials


@dataclass(frozen=True)
class S3Storage:
    """``object_storage_config`` with ``storage_type: S3``: where rejected rows are uploaded.

    Field names are the spec's (``format`` and ``compression`` are flattened to their
    ``format_type``, ``flattening`` and ``compression_type``); defaults come from the spec. Keys
    are None when the standard AWS credential chain is to be used.
    """

    s3_bucket_name: str
    s3_bucket_region: str = spec_default(_s3_properties)
    bucket_path: str = ""  # required in the spec (the form always sends it); empty is the bucket's root
    s3_endpoint: str | None = spec_default(_s3_properties)
    # No spec default, so None; written out because field() (for repr=False) keeps a spec_default
    # descriptor as the value instead of asking it.
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    role_arn: str | None = spec_default(_s3_properties)
    format_type: StorageFormat = spec_default(_s3_properties)
    flattening: Flattening = spec_default(_s3_properties)
    compression_type: CompressionType = spec_default(_s3_properties)
    path_format: str = spec_default(_s3_properties)
    file_name_format: str = spec_default(_s3_properties)
    # PEM of the private CA that issued the endpoint's certificate (None: the usual public CAs).
    s3_ca_certificate: str | None = field(default=None, repr=False)

    @property
    def location(self) -> str:
        """``s3://bucket/prefix/`` for messages (never holds a secret)."""
        prefix = f"{self.bucket_path}/" if self.bucket_path else ""
        return f"s3://{self.s3_bucket_name}/{prefix}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The key values that must never be printed."""
        return tuple(key for key in (self.access_key_id, self.secret_access_key) if key)

    def __repr__(self) -> str:
        return (
            f"S3Storage(s3_bucket_name={self.s3_bucket_name!r}, s3_bucket_region={self.s3_bucket_region!r}, "
            f"bucket_path={self.bucket_path!r}, s3_endpoint={self.s3_endpoint!r}, "
            f"keys={'****' if self.access_key_id else 'credential chain'}, role_arn={self.role_arn!r}, "
            f"format_type={self.format_type!r}, compression_type={self.compression_type!r})"
        )


@dataclass(frozen=True)
class SyncState:
    """``sync_state``: where the member index and the credit ledger are kept between syncs.

    ``storage`` ``"bucket"``: in the bucket of ``object_storage_config`` (``state/``, docs/sync-state.md),
    instead of ``member_index_path`` and ``ledger_path``; ``"none"``: those local files only.
    """

    storage: SyncStateStorage = spec_default(_sync_state_properties)

    @property
    def in_bucket(self) -> bool:
        """Whether the state is kept in the bucket of ``object_storage_config``."""
        return self.storage == "bucket"


@dataclass(frozen=True)
class ConnectorConfig:
    """Everything a sync needs, validated. Field names, defaults and ranges are those of spec.json."""

    api_base_url: str
    credentials: Credentials
    user_identifier_type: IdType = spec_default(_config_properties)
    object_type: ObjectType = spec_default(_config_properties)
    unmapped_fields: UnmappedFields = spec_default(_config_properties)
    null_values: NullValues = spec_default(_config_properties)
    field_mapping: tuple[FieldMapping, ...] = spec_default(_config_properties)
    custom_attributes: tuple[str, ...] = spec_default(_config_properties)
    dry_run: bool = spec_default(_config_properties)
    rejected_records_path: str | None = spec_default(_config_properties)
    rejected_records_include_pii: bool = spec_default(_config_properties)
    # None: storage_type "None" (rejected rows go nowhere but rejected_records_path).
    object_storage_config: S3Storage | None = spec_default(_config_properties)
    log_pii: bool = spec_default(_config_properties)
    require_location: bool = spec_default(_config_properties)
    event_id_field: str = spec_default(_config_properties)
    credit_verification: CreditVerification = spec_default(_config_properties)
    credit_history_days: int = spec_default(_config_properties)
    ledger_path: str | None = spec_default(_config_properties)
    award_queue_delay_seconds: float = spec_default(_config_properties)
    upsert_strategy: UpsertStrategy = spec_default(_config_properties)
    member_index_path: str | None = spec_default(_config_properties)
    skip_unchanged: bool = spec_default(_config_properties)
    member_index_max_age_days: int = spec_default(_config_properties)
    # The spec default ({"storage": "none"}) in its Python form; unit_tests/test_config.py checks they agree.
    sync_state: SyncState = SyncState()
    max_concurrency: int = spec_default(_config_properties)
    max_requests_per_minute: int = spec_default(_config_properties)
    max_retries: int = spec_default(_config_properties)
    request_timeout_seconds: float = spec_default(_config_properties)
    # Member removal (soft_delete streams of User Profile, writers/removal.py).
    delete_behaviour: DeleteBehaviour = spec_default(_config_properties)
    max_deletes_per_sync: int = spec_default(_config_properties)
    erase_status_wait_seconds: float = spec_default(_config_properties)
    # Guards against hostile or mistaken input and answers: limits on rows, points, waits, and when
    # to give up on a sync whose rows are almost all rejected (sync/, writers/ and api/ apply them).
    default_activity_id: str | None = spec_default(_config_properties)
    max_points_per_credit: int = spec_default(_config_properties)
    allow_negative_points: bool = spec_default(_config_properties)
    max_record_bytes: int = spec_default(_config_properties)
    max_nesting_depth: int = spec_default(_config_properties)
    reject_stop_sample: int = spec_default(_config_properties)
    reject_stop_share: float = spec_default(_config_properties)
    max_retry_wait_seconds: float = spec_default(_config_properties)
    server_unavailable_wait_seconds: float = spec_default(_config_properties)
    # Internal (not in the spec, see config.spec.INTERNAL_FIELDS).
    progress_interval_seconds: float = spec_default(_config_properties)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Secret values that must never be printed."""
        storage = self.object_storage_config.secrets if self.object_storage_config is not None else ()
        if isinstance(self.credentials, ApiKeyCredentials):
            return (self.credentials.api_key, *storage)
        return (self.credentials.private_key, *storage)

    def mapping_options(self) -> MappingOptions:
        """Options of the pure record mapping."""
        return MappingOptions(
            id_type=self.user_identifier_type,
            unmapped_fields=self.unmapped_fields,
            null_values=self.null_values,
            field_mapping=self.field_mapping,
        )
