"""bench/independent_load.py, the load a new user would run against `local up` and a stock server:
its verdict on issue 10's bar and how it reads what `local up` prints."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "independent_load.py"
spec = importlib.util.spec_from_file_location("independent_load", SCRIPT)
load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(load)


def cell(server, clients, per_call, rate, p99, errors=0):
    return {"server": server, "clients": clients, "metrics_per_call": per_call, "metrics_per_s": rate, "p99_ms": p99,
            "errors": errors}


def chatty(server, env, rate, calls=1000, stored=1000, errors=0):
    return {"server": server, "client_environment": env, "acknowledged_metrics_per_s": rate, "calls": calls,
            "stored": stored, "missing": calls - stored, "errors": errors}


def a_round(**change):
    cells = {"planned-8": cell("planned", 8, 1, 200, 50), "stock-8": cell("stock", 8, 1, 140, 560),
             "planned-10": cell("planned", 32, 10, 1600, 270), "stock-10": cell("stock", 32, 10, 1000, 2500),
             "planned-100": cell("planned", 32, 100, 5800, 700), "stock-100": cell("stock", 32, 100, 4400, 5400)}
    runs = {"with": chatty("planned", "planned", 3600), "stock": chatty("stock", "none", 140),
            "without": chatty("planned", "none", 230)}
    for key, value in change.items():
        (cells if key in cells else runs)[key] = value
    return {"cells": list(cells.values()), "chatty": list(runs.values())}


def failed(rounds):
    return [text for text, ok in load.verdict(rounds) if not ok]


def test_a_round_that_meets_the_bar_passes_every_check():
    checks = load.verdict([a_round(), a_round()])
    assert len(checks) == 14 and all(ok for _, ok in checks)


@pytest.mark.parametrize("change, failing", [
    ({"planned-8": cell("planned", 8, 1, 200, 50, errors=1)}, "planned 0 errors in every cell"),
    ({"planned-10": cell("planned", 32, 10, 999, 270)}, "32x10 planned 999 >= stock 1,000 metrics/s"),
    ({"planned-100": cell("planned", 32, 100, 5800, 2701)}, "32x100 planned p99 2,701 <= half stock's 5,400 ms"),
    ({"with": chatty("planned", "planned", 699)}, "chatty with the environment 4.99x stock without (>= 5x)"),
    ({"stock": chatty("stock", "none", 140, calls=1000, stored=999)}, "chatty every call stored"),
])
def test_each_part_of_the_bar_fails_on_its_own(change, failing):
    failures = failed([a_round(), a_round(**change)])
    assert len(failures) == 1 and failures[0].startswith("round 2: ") and failing in failures[0]


def test_it_reads_the_tracking_uri_and_client_environment_local_up_prints():
    printed = ("API http://127.0.0.1:5080   (training jobs log here)\nexport MLFLOW_TRACKING_URI=http://127.0.0.1:5080\n"
               "training jobs that log one metric per call: ...\nexport MLFLOW_ENABLE_ASYNC_LOGGING=true\n"
               "primary  postgresql://mlflow@127.0.0.1:15432/mlflow\n")
    assert load.exported(printed) == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5080", "MLFLOW_ENABLE_ASYNC_LOGGING": "true"}


def test_percentile_is_the_nearest_rank():
    values = list(range(1, 101))
    assert (load.percentile(values, 50), load.percentile(values, 99), load.percentile(values, 100)) == (50, 99, 100)
    assert load.percentile([7.0], 99) == 7.0
