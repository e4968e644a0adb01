# boomi-listener-exporter container image.
#
#   docker build -t boomi-listener-exporter .
#   docker run --rm -p 9877:9877 boomi-listener-exporter --demo
#
# Needs BuildKit for the RUN --mount below: the default builder since Docker 23; on Docker 20.10
# set DOCKER_BUILDKIT=1.
#
# Two stages: the builder turns the project and its dependencies into wheels; the final image
# installs only those wheels, so it carries no compiler, no build backend and no pip cache.
# tests/test_packaging.py lints this file with hadolint and checks it against the code (listen
# port, console script, user id); tests/test_image.py builds it on a stand-in for the base image
# made from Debian packages and runs the result.

# One pinned tag for both stages, so the wheels are built by the same Python that runs them.
# Pin it further by digest (python:3.11.16-slim-trixie@sha256:...) for byte-identical rebuilds.
ARG PYTHON_IMAGE=python:3.11.16-slim-trixie

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest of the context out):
# pyproject.toml names README.md as the long description, so it is needed too.
COPY pyproject.toml README.md ./
# The whole package tree, subpackages included; pyproject.toml says what goes into the wheel.
COPY exporter/ exporter/

# The project's own wheel first, then wheels of its dependencies, resolved from that wheel's
# metadata (pyproject.toml stays the only list of them). The second step names the wheel file,
# not the project, so a same-named package on the index can never be picked instead. A
# dependency without a wheel for this platform would be compiled here, never in the final stage.
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip wheel --wheel-dir /wheels /wheels/boomi_listener_exporter-*.whl


FROM ${PYTHON_IMAGE}

# No .pyc files at run time: the root filesystem is read-only under Kubernetes
# (deploy/kubernetes), and pip already compiled the installed modules. Unbuffered output so
# log lines reach `docker logs` as they are written.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A fixed, numeric, non-root user: Kubernetes can only verify runAsNonRoot for a numeric USER,
# and deploy/kubernetes sets runAsUser to the same id. Not --system, for which useradd warns
# that an id above 999 is out of the system range.
RUN groupadd --gid 10001 exporter \
    && useradd --uid 10001 --gid exporter --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin exporter

# The wheels are bind-mounted from the builder for this one step instead of copied, so they
# never become a layer of the final image. --no-index: everything comes from those wheels.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --disable-pip-version-check \
        --root-user-action=ignore /wheels/*.whl

# After the installed layers: ARGs are in the environment of every later RUN, so a new
# CREATED or REVISION (which the README's build command passes each time) would otherwise
# rebuild them on every build.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="boomi-listener-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Boomi listener status, with Alertmanager-driven remediation" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

USER 10001:10001
EXPOSE 9877

# /-/healthy answers 200 while the process runs. The image has no curl, so Python checks it;
# the opener has no proxy handler so that an HTTP_PROXY meant for reaching Boomi is not used
# for this loopback request. Assumes the default listen port; change it here with
# --web.listen-address.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:9877/-/healthy', timeout=4)"]

# Exec form: the exporter is PID 1 and receives SIGTERM from `docker stop` directly (no shell
# in between), so it stops gracefully within a few seconds.
ENTRYPOINT ["boomi-listener-exporter"]
CMD ["--config", "/etc/boomi-listener-exporter/config.yaml"]
