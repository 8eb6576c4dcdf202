"""The search-at-scale generator: its shape arithmetic, and on a tiny scale against a real PostgreSQL
with MLflow's own schema, that MLflow's store reads the rows back and the schema ends as it began."""

from __future__ import annotations

import re

import psycopg
import pytest

from infra.bench import scale
from infra.bench.scale import METRIC_KEYS, Shape
from infra.bench.variants import untuned_postgres


@pytest.mark.parametrize("runs,wanted,steps,rows", [
    (1_000_000, 10_000_000, 2, 10_000_000),
    (200, 3_000, 3, 3_000),
    (1_000, 10, 1, 5_000),         # at least one step per key: every run has its latest metrics
    (100, 1_240, 2, 1_000),        # whole steps: 2.48 rounds to 2
])
def test_shape_steps(runs, wanted, steps, rows):
    shape = Shape(runs, wanted)
    assert (shape.steps, shape.metric_rows) == (steps, rows)


def test_generated_sql_names_mlflow_columns():
    shape = Shape(100, 1_000)
    assert re.search(r'INSERT INTO metrics \(key, value, "timestamp", run_uuid, step, is_nan\)', scale.metrics_sql(shape))
    assert "generate_series(0, 99) i" in scale.runs_sql(shape)
    assert "generate_series(0, 9) k" in scale.params_sql(shape)
    # two connections, every table loaded exactly once
    tables = [table for items in scale.load_plan(shape) for table, _ in items]
    assert sorted(set(tables)) == ["experiments", "latest_metrics", "metrics", "params", "runs", "tags"]


def test_split_even():
    assert scale.split_even([1, 2, 3, 4, 5]) == [[1, 3, 5], [2, 4]]


def _schema(conn) -> set[tuple[str, str]]:
    rows = conn.execute("""SELECT tablename, indexdef FROM pg_indexes WHERE tablename = ANY(%s)
                           UNION ALL SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint
                           WHERE conrelid::regclass::text = ANY(%s)""",
                        (list(scale.REBUILT_TABLES), list(scale.REBUILT_TABLES))).fetchall()
    return set(rows)


@pytest.mark.postgres
def test_tiny_scale_is_read_by_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient

    shape = Shape(200, 3_000, experiments=4)
    with untuned_postgres(tmp_path / "data") as uri:
        scale.schema_upgrade(uri)
        with psycopg.connect(uri) as conn:
            before = _schema(conn)
        result = scale.generate(uri, shape, progress=lambda _: None)
        with psycopg.connect(uri) as conn:
            assert _schema(conn) == before  # dropped indexes and keys rebuilt with their exact definitions
            settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN ('max_wal_size', 'synchronous_commit')").fetchall())
        assert settings == {"max_wal_size": "1024", "synchronous_commit": "on"}  # the load's settings are undone
        assert result["rows"] == {"runs": 200, "params": 2_000, "tags": 1_000, "metrics": 3_000, "latest_metrics": 1_000}

        client = MlflowClient(scale.sqlalchemy_uri(uri))
        runs = client.search_runs(["1"], max_results=100)
        assert len(runs) == 50
        newest = runs[0]
        assert re.fullmatch(r"[0-9a-f]{32}", newest.info.run_id)
        assert newest.info.start_time == max(r.info.start_time for r in runs)
        assert set(newest.data.metrics) == set(METRIC_KEYS) and len(newest.data.params) == 10
        assert newest.data.tags["mlflow.runName"] == newest.info.run_name
        history = client.get_metric_history(newest.info.run_id, "acc")
        assert [m.step for m in history] == [0, 1, 2]
        assert newest.data.metrics["acc"] == history[-1].value  # latest_metrics agrees with the history
        assert len(client.search_runs(["1"], "params.lr = '0.01'", max_results=100)) > 0
        searches = scale.time_searches(scale.searches(client, "1"), repeats=1)
        assert set(searches) == {"newest runs (100)", "filter by param (params.lr = '0.01')", "filter by tag (tags.team = 'x')",
                                 "filter by metric (metrics.acc > 0.9)", "order by metric (metrics.acc DESC)",
                                 "get_metric_history (one run, acc)"}
