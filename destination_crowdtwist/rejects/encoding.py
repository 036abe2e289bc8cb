"""How rejected rows are encoded in an object: JSON lines or CSV, flattened and gzipped as configured.

Pure; the lines come from ``rejects/schema.bucket_line`` (Airbyte's object-storage layout).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from destination_crowdtwist.config import S3Storage
from destination_crowdtwist.rejects.schema import AIRBYTE_COLUMNS, DATA_COLUMN


def flatten_line(line: Mapping[str, Any]) -> dict[str, Any]:
    """"Root level flattening": the record's top-level fields next to the ``_airbyte_`` columns
    (a field named like one of those columns is dropped: the column wins).
    """
    flat = {name: line[name] for name in AIRBYTE_COLUMNS}
    for name, value in line[DATA_COLUMN].items():
        flat.setdefault(name, value)
    return flat


def encode_part(lines: Sequence[Mapping[str, Any]], storage: S3Storage) -> bytes:
    """The bytes of one object: JSON lines or CSV with a header, flattened and gzipped as configured."""
    flatten = storage.flattening == "Root level flattening"
    rows = [flatten_line(line) if flatten else dict(line) for line in lines]
    if storage.format_type == "JSONL":
        text = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
    else:
        columns: dict[str, None] = dict.fromkeys((*AIRBYTE_COLUMNS, *(() if flatten else (DATA_COLUMN,))))
        for row in rows:
            columns.update(dict.fromkeys(row))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(name)) for name in columns])
        text = buffer.getvalue()
    data = text.encode("utf-8")
    # mtime=0: the same rows give the same bytes (the object's name carries the time).
    return gzip.compress(data, mtime=0) if storage.compression_type == "GZIP" else data


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def format_extension(storage: S3Storage) -> str:
    """``.jsonl`` or ``.csv``, plus ``.gz`` with GZIP (Airbyte's ``{format_extension}``)."""
    extension = ".jsonl" if storage.format_type == "JSONL" else ".csv"
    return extension + (".gz" if storage.compression_type == "GZIP" else "")


def content_type(storage: S3Storage) -> str:
    """The object's Content-Type."""
    if storage.compression_type == "GZIP":
        return "application/gzip"
    return "application/jsonl" if storage.format_type == "JSONL" else "text/csv"

