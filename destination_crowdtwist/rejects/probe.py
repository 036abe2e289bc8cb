"""``check``'s probe of the user's bucket: write and delete a small object, or say what is wrong."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from destination_crowdtwist.config import S3Storage
from destination_crowdtwist.rejects.s3_client import S3Client
from destination_crowdtwist.rejects.s3_failures import S3Failure, failure_from_exception, wrong_region


def probe(
    storage: S3Storage, *, client: S3Client | None = None, new_id: Callable[[], str] = lambda: uuid.uuid4().hex
) -> str | None:
    """``check``: write and delete a small object under ``bucket_path``; None, or what is wrong.

    HeadBucket first tells a missing bucket and a wrong region apart (it answers with the bucket's
    region); a 403 there is left to the upload, which names the reason (unknown key, wrong secret,
    denied). Nothing in the answer holds a secret. No retries: a person is waiting for the answer.
    """
    own: S3Client | None = None
    try:
        s3 = client if client is not None else (own := S3Client(storage, connect_timeout=5.0, read_timeout=20.0))
        try:
            wrong = wrong_region(s3.client.head_bucket(Bucket=storage.s3_bucket_name), storage)
            if wrong is not None:
                return _check_message(wrong)
        except Exception as exc:  # noqa: BLE001 - classified by failure(), which re-raises the unknown
            failure = s3.failure(exc)
            if failure.kind != "denied":
                return _check_message(failure)
        key = "/".join(part for part in (storage.bucket_path, f"_airbyte_connection_check_{new_id()}") if part)
        try:
            s3.client.put_object(Bucket=storage.s3_bucket_name, Key=key, Body=b'{"data":1}\n')
        except Exception as exc:  # noqa: BLE001 - classified by failure(), which re-raises the unknown
            return _check_message(s3.failure(exc))
        try:
            s3.client.delete_object(Bucket=storage.s3_bucket_name, Key=key)
        except Exception as exc:  # noqa: BLE001 - classified by failure(), which re-raises the unknown
            failure = s3.failure(exc)
            return (
                f"Rejected rows can be written to {storage.location} but the check object {key} could not be deleted: "
                f"{failure.reason}. Allow s3:DeleteObject, or delete the object yourself."
            )
    except Exception as exc:  # noqa: BLE001 - classified by failure_from_exception, which re-raises the unknown
        # Making the client (or assuming the role) failed.
        return _check_message(failure_from_exception(exc, storage))
    finally:
        if own is not None:
            own.close()
    return None


def _check_message(failure: S3Failure) -> str:
    return f"Rejected rows cannot be stored in the bucket of object_storage_config: {failure.message}"
