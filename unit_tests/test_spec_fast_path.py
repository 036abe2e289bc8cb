"""``spec`` without the CDK: the same bytes as the CDK prints, and no ``airbyte_cdk`` import (issue 20:
the import was about 2.3 s of CPU, nearly all of a ``spec``)."""

from __future__ import annotations

import logging
import subprocess
import sys

import orjson
from airbyte_cdk.models import AirbyteMessage, Type
from airbyte_cdk.models.airbyte_protocol_serializers import AirbyteMessageSerializer

from destination_crowdtwist.destination import DestinationCrowdtwist
from destination_crowdtwist.run import spec_line


def test_the_fast_spec_is_byte_for_byte_what_the_cdk_prints() -> None:
    spec = DestinationCrowdtwist().spec(logging.getLogger("test"))
    message = AirbyteMessage(type=Type.SPEC, spec=spec)
    cdk = orjson.dumps(AirbyteMessageSerializer.dump(message)) + b"\n"
    assert spec_line() == cdk


def test_spec_runs_without_importing_the_cdk() -> None:
    code = ("import sys; from destination_crowdtwist.run import run; sys.argv = ['destination-crowdtwist', 'spec']; "
            "run(); assert 'airbyte_cdk' not in sys.modules, 'the CDK was imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True)
    assert out.stdout == spec_line()
    assert out.stderr == b""
