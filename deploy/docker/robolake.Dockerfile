# The robolake CLI; Compose's `setup` service runs `robolake stack bootstrap` with it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src/ src/
COPY tools/ tools/
RUN pip install --no-cache-dir . && useradd --create-home robolake
# Installed into site-packages, robolake cannot find tools/ beside its source; point at it.
ENV ROBOLAKE_TOOLS_DIR=/app/tools PYTHONUNBUFFERED=1
USER robolake
WORKDIR /home/robolake
ENTRYPOINT ["robolake"]
CMD ["--help"]
