"""The S3 calls of the sync state, on an injected boto3 client (the one the rejects code builds).

Objects travel through files in the store's working directory, never whole in memory: a download is
streamed to a file, an upload is read from one. Retries are botocore's (the injected client's
``retries`` setting): this module makes each call once and lets the caller decide what a failure
means (``state/errors.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from destination_crowdtwist.state.errors import error_code, is_missing, is_precondition_failed

_READ_CHUNK = 1024 * 1024
#: What :meth:`Bucket.download` returns when the copy held already is current.
UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Listed:
    """An object a listing showed."""

    key: str
    etag: str
    size: int


@dataclass(frozen=True)
class Downloaded:
    """An object copied to a local file, with the ETag it had when read."""

    key: str
    etag: str
    path: Path
    size: int


class Bucket:
    """The state's objects in one bucket; temporary copies in ``scratch``."""

    def __init__(self, s3: Any, bucket: str, scratch: str | Path) -> None:
        self.s3 = s3
        self.name = bucket
        self.scratch = Path(scratch)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._names = itertools.count()

    def where(self, key: str = "") -> str:
        """``s3://bucket/key`` for messages."""
        return f"s3://{self.name}/{key}"

    def scratch_file(self, stem: str) -> Path:
        """A new file name in the scratch folder (not created)."""
        return self.scratch / f"{stem}-{next(self._names)}.ctss"

    def listing(self, prefix: str) -> list[Listed]:
        """Every object under ``prefix`` (all pages), sorted by key."""
        found: list[Listed] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix}
            if token:
                params["ContinuationToken"] = token
            page = self.s3.list_objects_v2(**params)
            found.extend(Listed(str(item["Key"]), str(item.get("ETag", "")), int(item.get("Size", 0)))
                         for item in page.get("Contents", []))
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        return sorted(found, key=lambda item: item.key)

    def folders(self, prefix: str) -> list[str]:
        """The names of the folders directly under ``prefix`` (without the slash)."""
        names: list[str] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix, "Delimiter": "/"}
            if token:
                params["ContinuationToken"] = token
            page = self.s3.list_objects_v2(**params)
            names.extend(str(item["Prefix"])[len(prefix):].rstrip("/") for item in page.get("CommonPrefixes", []))
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        return sorted(names)

    def download(self, key: str, *, unless_etag: str | None = None) -> Downloaded | str | None:
        """Copy an object to a scratch file; None when it does not exist (any more).

        ``unless_etag``: the ETag of a copy held already; if the object still has it, nothing is
        transferred and :data:`UNCHANGED` comes back.
        """
        params: dict[str, Any] = {"Bucket": self.name, "Key": key}
        if unless_etag:
            params["IfNoneMatch"] = unless_etag
        try:
            answer = self.s3.get_object(**params)
        except Exception as exc:
            if is_missing(exc):
                return None
            if unless_etag and error_code(exc) in ("304", "NotModified"):
                return UNCHANGED
            raise
        path = self.scratch_file("download")
        size = 0
        body = answer["Body"]
        try:
            with path.open("wb") as out:
                for chunk in iter(lambda: body.read(_READ_CHUNK), b""):
                    out.write(chunk)
                    size += len(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            body.close()
        return Downloaded(key, str(answer.get("ETag", "")), path, size)

    def put_file(self, key: str, path: Path, *, if_match: str | None = None, if_none_match: bool = False) -> str:
        """Upload a file as ``key``, conditionally; returns the new ETag.

        ``if_match``: replace only the object with this ETag; ``if_none_match``: create only. A lost
        condition raises the client's error (:func:`is_precondition_failed` tells it apart).
        """
        params: dict[str, Any] = {"Bucket": self.name, "Key": key, "ContentType": "application/octet-stream"}
        if if_match is not None:
            params["IfMatch"] = if_match
        if if_none_match:
            params["IfNoneMatch"] = "*"
        with path.open("rb") as body:
            answer = self.s3.put_object(Body=body, **params)
        return str(answer.get("ETag", ""))

    def delete(self, key: str) -> None:
        """Delete an object (absent already is fine)."""
        self.s3.delete_object(Bucket=self.name, Key=key)

    def delete_many(self, keys: list[str]) -> set[str]:
        """Delete objects, up to 1,000 per request (``DeleteObjects``); returns the keys deleted.

        A compaction after a sync with many changes merges hundreds of deltas: one request each made
        the end of such a sync slower than all its CrowdTwist requests. A store without
        ``DeleteObjects`` (some S3-compatible ones) falls back to one ``DeleteObject`` per key; a key
        that could not be deleted is left out of the answer (the caller merges it again, harmlessly).
        """
        deleted: set[str] = set()
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start:start + _DELETE_BATCH]
            try:
                answer = self.s3.delete_objects(
                    Bucket=self.name, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
                )
            except Exception:  # noqa: BLE001 - no batch delete here: one request per key instead
                for key in batch:
                    try:
                        self.delete(key)
                        deleted.add(key)
                    except Exception:  # noqa: BLE001, S112 - left behind, merged again next time
                        continue
                continue
            failed = {str(error.get("Key")) for error in answer.get("Errors", [])}
            deleted.update(key for key in batch if key not in failed)
        return deleted

    def honours_conditions(self, folder: str) -> bool:
        """Whether the store refuses writes whose ``If-None-Match`` / ``If-Match`` does not hold.

        Some S3-compatible stores ignore the headers; replacing the base there could lose another
        sync's update, so the store then never replaces it (deltas are still safe: unique names).
        """
        key = f"{folder}probe-{uuid.uuid4().hex}"
        path = self.scratch_file("probe")
        path.write_bytes(b"probe")
        try:
            self.put_file(key, path, if_none_match=True)
            for condition in ({"if_none_match": True}, {"if_match": '"00000000000000000000000000000000"'}):
                try:
                    self.put_file(key, path, **condition)
                except Exception as exc:
                    if not is_precondition_failed(exc):
                        raise
                else:
                    return False
            return True
        finally:
            path.unlink(missing_ok=True)
            self.delete(key)


#: Keys per DeleteObjects request (S3's maximum).
_DELETE_BATCH = 1000


def remove(path: Path | None) -> None:
    """Delete a scratch file, quietly."""
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)
