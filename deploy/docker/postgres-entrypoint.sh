#!/bin/sh
# lakeFS's database: made on the first start (user and database `lakefs`, the password from
# POSTGRES_PASSWORD, password authentication from the Compose network), then PostgreSQL itself.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (the password of PostgreSQL's user lakefs)}"
data=/var/lib/postgresql/data
if [ ! -s "$data/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$data" -U lakefs --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 --no-locale --no-instructions
  rm -f "$pwfile"
  echo "CREATE DATABASE lakefs" | postgres --single -D "$data" postgres > /dev/null
  echo "host all all all scram-sha-256" >> "$data/pg_hba.conf"
fi
exec postgres -D "$data" -c listen_addresses='*' -c unix_socket_directories=/tmp
