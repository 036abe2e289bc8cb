"""``object_storage_config``: the S3 settings, with the rules JSON Schema cannot express.

The bucket is a name (not a URL), the endpoint a URL without credentials, keys come in pairs and
carry no character a request cannot, the role is an ARN, the CA certificate is a PEM, and the path
and file name templates use only the variables rejects/layout.py expands (with
``{part_number}`` in every file name). Types, enums and defaults were checked against spec.json before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.config.checks import checked_key, url_parts
from destination_crowdtwist.config.model import S3Storage
from destination_crowdtwist.config.spec import build, flat_properties, flatten, s3_option
from destination_crowdtwist.config.validation import shown

#: The variables of ``object_storage_config.path_format`` and ``file_name_format`` (their meaning is
#: in the spec descriptions; rejects/layout.py expands them, and its tests check it knows exactly
#: these). ``date:PATTERN`` stands for ``{date:yyyy_MM}`` and the like.
PATH_VARIABLES: frozenset[str] = frozenset(
    {"sync_id", "generation_id", "namespace", "stream_name", "year", "month", "day", "epoch"}
)
FILE_NAME_VARIABLES: frozenset[str] = frozenset(
    {"date", "date:PATTERN", "timestamp", "part_number", "sync_id", "format_extension"}
)

_STORAGE = "object_storage_config"
_TEMPLATE_VARIABLE = re.compile(r"\{([^{}]*)\}")
# {date:PATTERN}: the Java-style letters Airbyte's examples use; anything else in a pattern would be
# kept literally by Airbyte's own writer, so it is refused here rather than silently misnamed.
_DATE_PATTERN = re.compile(r"(?:yyyy|MM|dd|HH|mm|ss|[^A-Za-z{}:])+")


def storage_gaps(block: Mapping[str, Any]) -> Mapping[str, Any]:
    """What a config written by hand may leave out: ``storage_type`` (S3 when a bucket is named), and
    ``bucket_path``, which the form always sends (empty: the bucket's root).
    """
    return {"storage_type": "S3" if block.get("s3_bucket_name") else "None", "bucket_path": ""}


def _bucket_name(value: str) -> str:
    name = value.strip()
    if name.lower().startswith("s3://") or "/" in name:
        raise ConfigError(
            f"{_STORAGE}.s3_bucket_name must be the bucket's name only (got {shown(name)}); "
            "put a folder in bucket_path"
        )
    if not name.isascii() or not name.isprintable() or " " in name:
        raise ConfigError(
            f"{_STORAGE}.s3_bucket_name must be a bucket name (letters, digits, '-', '.'; got {shown(name)})"
        )
    return name


def _endpoint(value: str) -> str:
    url = value.strip()
    keys = "use access_key_id and secret_access_key"
    url_parts(url, f"{_STORAGE}.s3_endpoint", "https://minio.example.com:9000", keys)
    return url.rstrip("/")


def _key(name: str) -> Callable[[str], str]:
    return lambda value: checked_key(value, f"{_STORAGE}.{name}", "the AWS console or your S3 store")


def _role_arn(value: str) -> str:
    arn = value.strip()
    if not arn.startswith("arn:"):
        raise ConfigError(f"{_STORAGE}.role_arn must be an IAM role ARN such as arn:aws:iam::123456789012:role/name")
    return arn


def _template(name: str, variables: frozenset[str]) -> Callable[[str], str]:
    # Kept as written (not trimmed): spaces in a template are part of the object names.
    def check(value: str) -> str:
        for found in _TEMPLATE_VARIABLE.findall(value):
            known = found in variables
            if not known and found.startswith("date:") and "date:PATTERN" in variables:
                known = _DATE_PATTERN.fullmatch(found[5:]) is not None
            if not known:
                names = ", ".join("{" + v.replace("PATTERN", "yyyy_MM") + "}" for v in sorted(variables))
                raise ConfigError(f"{_STORAGE}.{name} has the unknown variable {{{found}}}; known: {names}")
        if "{" in _TEMPLATE_VARIABLE.sub("", value) or "}" in _TEMPLATE_VARIABLE.sub("", value):
            raise ConfigError(f"{_STORAGE}.{name} has an unmatched brace (got {shown(value)})")
        return value

    return check


def _file_name(value: str) -> str:
    value = _template("file_name_format", FILE_NAME_VARIABLES)(value)
    if "{part_number}" not in value:
        # Without it, the second upload of a stream would replace the first, and with it rejected
        # rows whose checkpoint was already confirmed.
        raise ConfigError(
            f"{_STORAGE}.file_name_format must contain {{part_number}}, so that every upload is a new object"
        )
    return value


def _ca_certificate(value: str) -> str:
    pem = value.strip()
    if "-----BEGIN CERTIFICATE-----" not in pem or "-----END CERTIFICATE-----" not in pem:
        raise ConfigError(
            f"{_STORAGE}.s3_ca_certificate must be a certificate in PEM form, from -----BEGIN CERTIFICATE----- "
            "to -----END CERTIFICATE-----"
        )
    return pem + "\n"


_CHECKS: Mapping[str, Callable[[Any], Any]] = {
    "s3_bucket_name": _bucket_name,
    "bucket_path": lambda value: value.strip().strip("/"),
    "s3_endpoint": _endpoint,
    "access_key_id": _key("access_key_id"),
    "secret_access_key": _key("secret_access_key"),
    "role_arn": _role_arn,
    "path_format": _template("path_format", PATH_VARIABLES),
    "file_name_format": _file_name,
    "s3_ca_certificate": _ca_certificate,
}


def s3_storage(block: Mapping[str, Any]) -> S3Storage | None:
    """The validated ``object_storage_config``: None for ``storage_type: None``, else the S3 settings."""
    if block["storage_type"] != "S3":
        return None
    option = s3_option()
    storage: S3Storage = build(S3Storage, flat_properties(option), flatten(option, block), _CHECKS)
    if (storage.access_key_id is None) != (storage.secret_access_key is None):
        missing = "secret_access_key" if storage.secret_access_key is None else "access_key_id"
        raise ConfigError(
            f"{_STORAGE}.{missing} is missing: set both access_key_id and secret_access_key, or neither to use "
            "the AWS credential chain"
        )
    return storage
