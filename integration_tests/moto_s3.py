"""A real S3 API for tests: moto's server (``moto_server``, a dev dependency) as a subprocess on 127.0.0.1.

IAM authentication is on, as on AWS: the first five requests (unauthenticated, moto's
``INITIAL_NO_AUTH_ACTION_COUNT``) create two users, ``admin`` (allowed everything) and ``nobody``
(allowed nothing), and every later request must be signed by a known key. So "access denied",
"unknown key" and "wrong secret" are S3's own answers, not simulations.

    with MotoS3() as s3:
        s3.create_bucket("rejects")
        config = {..., "object_storage_config": s3.storage_config("rejects", bucket_path="dlq")}
        s3.objects("rejects")          # {key: bytes}
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"
_ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_command(port: int) -> list[str]:
    script = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if script is None:  # installed without console scripts: the same server as a module
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return [script, "-H", "127.0.0.1", "-p", str(port)]


class MotoS3:
    """One ``moto_server`` process with ``admin`` and ``nobody`` users; ``stop()`` ends it."""

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.admin: dict[str, str] = {}
        self.nobody: dict[str, str] = {}
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoS3:
        """Start the server, wait until it accepts connections, create the users."""
        self.port = free_port()
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "5"}
        self.process = subprocess.Popen(_server_command(self.port), stdout=self._log, stderr=self._log, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"moto_server exited: {self._log.read()[-2000:]!r}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto_server did not start in time") from None
                time.sleep(0.05)
        iam = self.client("iam", {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"})
        # Exactly five unauthenticated actions (INITIAL_NO_AUTH_ACTION_COUNT); after them, auth is on.
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(_ALLOW_ALL))
        self.admin = _keys(iam.create_access_key(UserName="admin"))
        iam.create_user(UserName="nobody")
        self.nobody = _keys(iam.create_access_key(UserName="nobody"))
        return self

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit) and wait for it."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> MotoS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients and data --------------------------------------------------------------------------

    def client(self, service: str = "s3", keys: dict[str, str] | None = None, region: str = REGION) -> Any:
        """A boto3 client of this server (admin keys by default)."""
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=region,
            config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
            **(keys if keys is not None else self.admin),
        )

    def create_bucket(self, name: str, region: str = REGION) -> None:
        """Create a bucket (in ``region``, which HeadBucket then reports)."""
        options: dict[str, Any] = {}
        if region != "us-east-1":
            options["CreateBucketConfiguration"] = {"LocationConstraint": region}
        self.client(region=region).create_bucket(Bucket=name, **options)

    def delete_bucket(self, name: str) -> None:
        """Empty and delete a bucket."""
        s3 = self.client()
        for key in self.objects(name):
            s3.delete_object(Bucket=name, Key=key)
        s3.delete_bucket(Bucket=name)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object under ``prefix``, by key (sorted)."""
        s3 = self.client()
        keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
        return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in sorted(keys)}

    def storage_config(self, bucket: str, keys: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        """An ``object_storage_config`` block for ``bucket`` on this server (admin keys, JSONL by default)."""
        chosen = keys if keys is not None else self.admin
        block: dict[str, Any] = {
            "storage_type": "S3",
            "access_key_id": chosen["aws_access_key_id"],
            "secret_access_key": chosen["aws_secret_access_key"],
            "s3_bucket_name": bucket,
            "s3_bucket_region": REGION,
            "s3_endpoint": self.endpoint,
            "bucket_path": "",
            "format": {"format_type": "JSONL"},
        }
        block.update(extra)
        return block


def _keys(response: dict[str, Any]) -> dict[str, str]:
    key = response["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


def listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp{,6} writes them) that LISTEN on ``port`` (Linux)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, port_hex = fields[1].rpartition(":")
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(address)
    return found
