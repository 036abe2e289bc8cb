"""Where rejected rows go in the user's bucket: ``{bucket_path}/{path_format}{file_name_format}``.

Airbyte's object-storage layout (docs/crowdtwist.md, "Rejected rows in your S3 bucket"): the
templates' variables are expanded as Airbyte's own writer does. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from destination_crowdtwist.config import S3Storage
from destination_crowdtwist.rejects.encoding import format_extension
from destination_crowdtwist.writers.base import StreamContext

_VARIABLE = re.compile(r"\{([^{}]*)\}")
_DATE_TOKENS = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
_DATE_TOKEN = re.compile("|".join(_DATE_TOKENS))


def path_values(stream: StreamContext, started_at: datetime) -> dict[str, str]:
    """The values of ``path_format``'s variables for one stream (time: the sync's start, UTC).

    As in Airbyte's writer, month and day are not zero-padded and ``{epoch}`` is in milliseconds.
    """
    return {
        "sync_id": str(stream.sync_id if stream.sync_id is not None else 0),
        "generation_id": str(stream.generation_id if stream.generation_id is not None else 0),
        "namespace": stream.namespace or "",
        "stream_name": stream.name,
        "year": str(started_at.year),
        "month": str(started_at.month),
        "day": str(started_at.day),
        "epoch": str(int(started_at.timestamp() * 1000)),
    }


def file_name_values(
    stream: StreamContext, storage: S3Storage, started_at: datetime, part_number: int
) -> dict[str, str]:
    """The values of ``file_name_format``'s variables (``{date:…}`` is expanded by :func:`expand`)."""
    millis = started_at.microsecond // 1000
    return {
        "date": started_at.strftime("%Y-%m-%d"),
        "timestamp": started_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z",
        "part_number": str(part_number),
        "sync_id": str(stream.sync_id if stream.sync_id is not None else 0),
        "format_extension": format_extension(storage),
    }


def expand(template: str, values: Mapping[str, str], started_at: datetime) -> str:
    """Replace every ``{variable}`` of ``template``; ``{date:yyyy_MM}`` formats ``started_at``.

    The config refused unknown variables already, so one here is a programming error (KeyError).
    """

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("date:"):
            pattern = _DATE_TOKEN.sub(lambda token: _DATE_TOKENS[token.group(0)], name[5:].replace("%", "%%"))
            return started_at.strftime(pattern)
        return values[name]

    return _VARIABLE.sub(one, template)


def object_key(storage: S3Storage, stream: StreamContext, started_at: datetime, part_number: int) -> str:
    """``{bucket_path}/{path_format}{file_name_format}`` expanded; empty segments (no namespace) dropped,
    as Airbyte's writer does when it joins the parts as a path.
    """
    directory = expand(storage.path_format, path_values(stream, started_at), started_at)
    name = expand(storage.file_name_format, file_name_values(stream, storage, started_at, part_number), started_at)
    return "/".join(segment for segment in f"{storage.bucket_path}/{directory}/{name}".split("/") if segment)


def known_variables() -> tuple[frozenset[str], frozenset[str]]:
    """The variables this module expands (tests check they are exactly the config's)."""
    stream = StreamContext(None, "s", "append")
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    files = set(file_name_values(stream, S3Storage("b"), epoch, 1)) | {"date:PATTERN"}
    return frozenset(path_values(stream, epoch)), frozenset(files)

