# PostgreSQL, lakeFS's database in docker-compose.cloud.yml: Debian's server. The base is a build
# argument: Debian's public image by default, robolake's local Debian base (which has the server
# already) where no registry answers. The entrypoint makes the database on the first start.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
COPY deploy/docker/ca/ /usr/local/share/ca-certificates/
RUN if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
      (update-ca-certificates 2>/dev/null || true) && apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 \
      && rm -rf /var/lib/apt/lists/*; fi \
    && ln -sf "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"/* /usr/local/bin/ \
    && mkdir -p /var/lib/postgresql/data && chown postgres:postgres /var/lib/postgresql/data
COPY deploy/docker/postgres-entrypoint.sh /usr/local/bin/robolake-postgres
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/robolake-postgres"]
