#!/bin/sh
# Postgres for the compose stack: on the first start, an empty $PGDATA becomes a cluster whose
# superuser $POSTGRES_USER has $POSTGRES_PASSWORD (scram-sha-256 from the network) and which holds
# database $POSTGRES_DB; then the server runs in the foreground. The same variables as the
# official postgres image, so either serves compose.yaml.
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
[ -n "${POSTGRES_PASSWORD:-}" ] || { echo "medialens-postgres: POSTGRES_PASSWORD is not set" >&2; exit 2; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pw"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\";" | postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "medialens-postgres: new cluster in $PGDATA, database $POSTGRES_DB"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql
