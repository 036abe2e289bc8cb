# Standalone image for destination-crowdtwist (the legacy per-connector Dockerfile style that
# out-of-tree connectors use). Only the connector and the files its install needs are copied: no
# tests, docs, scripts, and no crowdtwist_sandbox (setup.py installs the sandbox only when its
# directory is present, i.e. in a developer checkout). A change to the tests or docs therefore does
# not invalidate the pip layer either. integration_tests/test_install.py replays the COPY and RUN
# pip install steps below in a fresh venv, so keep them simple (one source list per COPY,
# destination relative to WORKDIR).
FROM docker.io/airbyte/python-connector-base:4.0.2@sha256:9fdb1888c4264cf6fee473649ecb593f56f58e5d0096a87ee0b231777e2e3e73

WORKDIR /airbyte/integration_code

COPY setup.py pyproject.toml spec.json ./
# destination_crowdtwist/spec.json is a relative symlink to ../spec.json, copied as a link and
# resolved against the spec.json copied above; the wheel build stores the file's contents.
COPY destination_crowdtwist ./destination_crowdtwist

RUN pip install --no-cache-dir .

# The base image does not set it; the connector flushes stdout itself, this is a second guard.
ENV PYTHONUNBUFFERED=1
# The platform wraps this command; the console script name equals the connector name.
ENV AIRBYTE_ENTRYPOINT="destination-crowdtwist"
ENTRYPOINT ["destination-crowdtwist"]

LABEL io.airbyte.name=airbyte/destination-crowdtwist
LABEL io.airbyte.version=0.2.0
