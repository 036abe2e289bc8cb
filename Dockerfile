# Standalone image for destination-crowdtwist, shaped like Airbyte's Python connector template
# (docker-images/Dockerfile.python-connector of the airbyte repository, which `airbyte-cdk image build`
# renders): the python-connector-base image, the connector installed with pip, and the final image
# running as the unprivileged `airbyte` user that the base image provides. Build it with
# `docker build .` or `airbyte-cdk image build "$PWD" --dockerfile Dockerfile` (docs/deploy.md).
#
# Only the connector and the files its install needs are copied: no tests, docs, scripts, examples,
# and no crowdtwist_sandbox (setup.py installs the sandbox only when its directory is present, i.e.
# in a developer checkout). A change to the tests or docs therefore does not invalidate the pip
# layer either. integration_tests/test_install.py replays the COPY and RUN pip install steps below in
# a fresh venv, so keep them simple (one source list per COPY, destination relative to WORKDIR).
#
# Base image 4.1.0 runs Python 3.13 (the connector supports 3.11 to 3.13, setup.py); the digest is the
# one Airbyte's MotherDuck destination pins for 4.1.0. No test here pulls or builds the image (no
# Docker engine): test_install.py replays the install with the local Python. Bump FROM and
# metadata.yaml's baseImage together.
FROM docker.io/airbyte/python-connector-base:4.1.0@sha256:1d1aa21d34e851df4e8a87b391c27724c06e2597608e7161f4d167be853bd7b6

WORKDIR /airbyte/integration_code

COPY setup.py pyproject.toml spec.json ./
# destination_crowdtwist/spec.json is a relative symlink to ../spec.json, copied as a link and
# resolved against the spec.json copied above; the wheel build stores the file's contents.
COPY destination_crowdtwist ./destination_crowdtwist

# Installed as root into the image's Python, so the airbyte user can run it but not change it.
RUN pip install --no-cache-dir .

# The base image does not set it; the connector flushes stdout itself, this is a second guard.
ENV PYTHONUNBUFFERED=1
# The platform wraps this command; the console script name equals the connector name. Airbyte's
# template points both at an /entrypoint.sh that runs the console script; calling the console script
# directly (exec form, no shell in between) is the same command and lets SIGTERM reach the connector.
ENV AIRBYTE_ENTRYPOINT="destination-crowdtwist"
ENTRYPOINT ["destination-crowdtwist"]

# The image's own name and version; the registry and namespace are the ones you push to
# (docs/deploy.md). `airbyte-cdk image build` sets the same labels from metadata.yaml.
LABEL io.airbyte.name=destination-crowdtwist
LABEL io.airbyte.version=0.4.0

# As in Airbyte's template: the connector runs unprivileged. The user comes from the base image
# (assumed, as the template assumes it; not checked here without a Docker engine). Files the
# connector writes (rejected_records_path, member_index_path, ledger_path, temporary files) must be
# under a directory that user can write: /tmp or a mounted volume, not /airbyte/integration_code.
USER airbyte
