"""Rendering of the benchmark's tables: ratios against the baseline, the calibration fit and its YAML
block (made-up rows; the real figures come from `mlflow-infra bench`)."""

from __future__ import annotations

import pytest

from infra.bench.report import (
    calibration,
    ceiling_table,
    chatty_table,
    fmt_ms,
    ingest_table,
    markdown,
    ratio_matrix,
    search_table,
    short_error,
    stacks_table,
    with_ratios,
    yaml_block,
)


def row(variant, clients, batch, metrics_per_s, p99=10.0, errors=0, cpu_ms=None):
    return {"variant": variant, "clients": clients, "metrics_per_call": batch, "metrics_per_s": metrics_per_s,
            "requests_per_s": metrics_per_s / batch, "p50_ms": p99 / 2, "p99_ms": p99, "errors": errors,
            "requests": 100, "server_cpu_ms_per_request": cpu_ms}


ROWS = [row("stock-sqlite", 8, 10, 1000.0, p99=40.0), row("stock-postgres", 8, 10, 1500.0, p99=20.0),
        row("planned-local", 8, 10, 3000.0, p99=10.0), row("planned-local", 8, 100, 9000.0)]


def test_ratios_are_against_the_same_cell_of_the_baseline():
    ratios = {(r["variant"], r["metrics_per_call"]): r for r in with_ratios(ROWS, "stock-sqlite")}
    assert ratios[("planned-local", 10)]["throughput_ratio"] == pytest.approx(3.0)
    assert ratios[("planned-local", 10)]["p99_ratio"] == pytest.approx(0.25)
    assert ratios[("stock-sqlite", 10)]["throughput_ratio"] == pytest.approx(1.0)
    assert ratios[("planned-local", 100)]["throughput_ratio"] is None  # the baseline has no such cell


def test_ratio_matrix_has_one_column_per_other_variant():
    text = ratio_matrix(ROWS, "stock-sqlite")
    lines = text.splitlines()
    assert lines[0] == "| clients | metrics/call | stock-postgres / stock-sqlite | planned-local / stock-sqlite |"
    assert lines[1] == "|---|---|---|---|"
    assert "| 8 | 10 | 1.50x | 3.00x |" in lines
    assert "| 8 | 100 | - | - |" in lines


def test_ingest_table_sorts_by_cell_and_formats_numbers():
    text = ingest_table(ROWS, "stock-sqlite")
    assert "| 8 | 10 | planned-local | 3,000 | 300.0 | 5.00 | 10.0 | 0 | 3.00x |" in text
    assert text.splitlines()[2].split(" | ")[2] == "planned-local"  # within a cell, variants alphabetically


@pytest.mark.parametrize("ms,text", [(None, "-"), (0.3123, "0.31"), (12.34, "12.3"), (1234.5, "1,234")])
def test_fmt_ms(ms, text):
    assert fmt_ms(ms) == text


def test_search_table_shows_speedup():
    search = {"stock": {"newest runs": {"rows": 100, "median_ms": 30.0}},
              "migrated": {"newest runs": {"rows": 100, "median_ms": 0.3}}}
    assert search_table(search).splitlines()[-1] == "| newest runs | 100 | 30.0 | 0.30 | 100.00x |"


def test_ceiling_table_states_the_fraction():
    text = ceiling_table([{"variant": "planned-local", "copy_rows_per_s": 100000.0, "insert_rows_per_s": 50000.0,
                           "best_api_metrics_per_s": 25000.0, "api_fraction": 0.25}])
    assert text.splitlines()[-1] == "| planned-local | 100,000 | 50,000 | 25,000 | 25% |"


def test_calibration_fits_fixed_and_per_metric_cost_over_clean_cells():
    rows = [row("planned-local", c, b, 1.0, cpu_ms=5 + 0.05 * b) for c in (1, 8) for b in (1, 10, 100, 1000)]
    rows.append(row("planned-local", 32, 1000, 1.0, errors=3, cpu_ms=500.0))  # a cell with errors is left out
    rows.append(row("stock-sqlite", 8, 10, 1.0, cpu_ms=99.0))                 # another variant is left out
    fit = calibration(rows, "planned-local")
    assert fit["points"] == 8
    assert fit["fixed_ms"] == pytest.approx(5)
    assert fit["per_metric_ms"] == pytest.approx(0.05)
    assert calibration(rows[:1], "planned-local") is None  # one batch size cannot separate fixed from per-metric


def test_yaml_block_is_in_seconds():
    block = yaml_block({"fixed_ms": 4.5, "per_metric_ms": 0.072}, 25.0, "mlflow-infra bench, 2026-11-25")
    assert block.splitlines() == ["server_cpu_seconds:       # mlflow-infra bench, 2026-11-25",
                                  "  per_logging_request: 0.00450", "  per_metric: 0.0000720", "  per_ui_request: 0.0250"]


def test_markdown_renders_the_sections_that_ran():
    results = {"meta": {"date": "2026-11-25", "command": "mlflow-infra bench --quick", "machine": "2 vCPU", "mlflow": "3.17.2",
                        "postgres": "PostgreSQL 18.6", "baseline": "stock-sqlite", "duration_s": 3.0, "load_processes": 2,
                        "labels": {"stock-sqlite": "(a) stock"}},
               "ingest": ROWS, "reads": [], "ceiling": [], "search": None, "calibration": None,
               "notes": ["search at scale was not rerun; its figures are from mlflow-infra bench (2026-11-24)"]}
    text = markdown(results)
    assert text.startswith("# mlflow-infra bench: 2026-11-25\n")
    assert "## Ingest" in text and "## Search at scale" not in text and "## Read isolation" not in text
    assert text.rstrip().endswith("- search at scale was not rerun; its figures are from mlflow-infra bench (2026-11-24)")


def test_short_error_names_the_cause_and_the_endpoint():
    text = ("MlflowException: API request to http://127.0.0.1:5/api/2.0/mlflow/runs/log-batch failed with exception"
            " HTTPConnectionPool(host='127.0.0.1', port=5): Max retries exceeded with url: /api/2.0/mlflow/runs/log-batch"
            " (Caused by ReadTimeoutError(\"HTTPConnectionPool(host='127.0.0.1', port=5): Re")
    assert short_error(text) == "ReadTimeoutError on /api/2.0/mlflow/runs/log-batch"
    assert short_error("RestException: BAD_REQUEST") == "RestException: BAD_REQUEST"


def test_stacks_are_compared_with_the_planned_server_in_the_same_cell():
    planned = "gunicorn sync (planned)"
    rows = [row(planned, 32, 10, 1600.0, p99=300.0, cpu_ms=7.0), row("uvicorn (MLflow default)", 32, 10, 800.0, p99=1200.0, errors=3),
            row(planned, 1, 1, 90.0, p99=20.0)]
    lines = stacks_table(rows, planned).splitlines()
    assert lines[0].startswith("| clients | metrics/call | server | metrics/s |")
    assert "| 32 | 10 | uvicorn (MLflow default) | 800 | 600 | 1,200 | 3 | - | 0.50x | 4.00x |" in lines
    assert lines[2].startswith("| 1 | 1 | gunicorn sync (planned) |"), "sorted by cell"


def test_chatty_rows_are_against_stock_sqlite_without_the_environment():
    def chatty(variant, env, per_s, missing=0):
        return {"variant": variant, "client_environment": env, "calls": 1000, "stored": 1000 - missing, "missing": missing,
                "errors": 0, "elapsed_s": 10.0, "metrics_per_s": per_s, "call_p50_ms": 0.05}
    text = chatty_table([chatty("planned-local", "the plan's", 9000.0), chatty("planned-local", "none", 600.0),
                         chatty("stock-sqlite", "none", 450.0, missing=2)])
    assert "| planned-local | the plan's | 1,000 | 1,000 | 0 | 0 | 10.0 | 9,000 | 0.05 | 20.00x |" in text
    assert "| stock-sqlite | none | 1,000 | 998 | 2 | 0 | 10.0 | 450 | 0.05 | 1.00x |" in text
