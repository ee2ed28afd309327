# The robolake CLI: Compose's accelerator, hooks and setup services run it. The base is a build
# argument (any Debian-like image with Python 3.11+ and its venv module: the public python image
# by default, robolake's local Debian base where no registry answers). Extra CA certificates in
# deploy/docker/ca/ (robolake stack images copies the host's) are trusted while pip installs.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
COPY deploy/docker/ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null 2>&1; python3 -m venv /opt/robolake && useradd --create-home robolake
ENV PATH=/opt/robolake/bin:$PATH PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Dependencies first (a layer that changes only with pyproject.toml), then robolake itself.
COPY pyproject.toml README.md ./
RUN mkdir -p src/robolake && touch src/robolake/__init__.py && pip install --no-cache-dir . && rm -rf src build
COPY src/ src/
COPY tools/ tools/
RUN pip install --no-cache-dir --no-deps --force-reinstall .
# Installed into site-packages, robolake cannot find tools/ beside its source; point at it.
ENV ROBOLAKE_TOOLS_DIR=/app/tools PYTHONUNBUFFERED=1
USER robolake
WORKDIR /home/robolake
ENTRYPOINT ["robolake"]
CMD ["--help"]
