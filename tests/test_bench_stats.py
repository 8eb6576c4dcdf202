"""The benchmark's pure statistics and option parsing (no performance assertions: figures come from
`mlflow-infra bench`)."""

from __future__ import annotations

import argparse

import pytest

from infra.cli.bench import FULL, QUICK, options_from, register
from infra.bench.load import batch_shape, make_batch
from infra.bench.stats import (
    latency_summary,
    linear_fit,
    parse_int_list,
    percentile,
    ratio,
    split_clients,
    throughput,
)


@pytest.mark.parametrize("values,q,expected", [
    ([1, 2, 3, 4, 5], 50, 3),
    ([1, 2, 3, 4], 50, 2.5),
    ([10], 99, 10),
    ([1, 2, 3, 4, 5], 0, 1),
    ([1, 2, 3, 4, 5], 100, 5),
    (list(range(1, 101)), 99, 99.01),   # numpy's linear interpolation: rank 98.01
    ([5, 1, 4, 2, 3], 25, 2),           # unsorted input
])
def test_percentile(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_none():
    assert percentile([], 99) is None


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_refuses_out_of_range(q):
    with pytest.raises(ValueError, match="expected a number from 0 to 100"):
        percentile([1, 2], q)


def test_latency_summary_is_in_milliseconds():
    summary = latency_summary([0.001, 0.002, 0.003])
    assert summary == {"p50_ms": pytest.approx(2.0), "p99_ms": pytest.approx(2.98), "max_ms": pytest.approx(3.0)}
    assert latency_summary([]) == {"p50_ms": None, "p99_ms": None, "max_ms": None}


@pytest.mark.parametrize("requests,batch,elapsed,expected", [
    (100, 10, 2.0, {"requests_per_s": 50.0, "metrics_per_s": 500.0}),
    (0, 10, 2.0, {"requests_per_s": 0.0, "metrics_per_s": 0.0}),
    (5, 1, 0.0, {"requests_per_s": 0.0, "metrics_per_s": 0.0}),
])
def test_throughput(requests, batch, elapsed, expected):
    assert throughput(requests, batch, elapsed) == expected


@pytest.mark.parametrize("value,baseline,expected", [(10, 5, 2.0), (None, 5, None), (3, None, None), (3, 0, None)])
def test_ratio(value, baseline, expected):
    assert ratio(value, baseline) == expected


def test_linear_fit_recovers_a_line():
    fit = linear_fit([1, 10, 100, 1000], [4 + 0.07 * x for x in (1, 10, 100, 1000)])
    assert fit["fixed"] == pytest.approx(4)
    assert fit["slope"] == pytest.approx(0.07)
    assert fit["r2"] == pytest.approx(1)


@pytest.mark.parametrize("xs,ys,message", [([1, 1], [2, 3], "two distinct x"), ([1, 2], [2], "as many x as y")])
def test_linear_fit_refuses_underdetermined_input(xs, ys, message):
    with pytest.raises(ValueError, match=message):
        linear_fit(xs, ys)


@pytest.mark.parametrize("clients,processes,expected", [(1, 2, [1]), (8, 2, [4, 4]), (32, 2, [16, 16]), (5, 2, [3, 2]),
                                                        (3, 4, [1, 1, 1])])
def test_split_clients(clients, processes, expected):
    assert split_clients(clients, processes) == expected
    assert sum(split_clients(clients, processes)) == clients


@pytest.mark.parametrize("text,expected", [("1,8,32", [1, 8, 32]), ("100", [100]), ("8, 1,8", [8, 1])])
def test_parse_int_list(text, expected):
    assert parse_int_list(text) == expected


@pytest.mark.parametrize("text", ["", "a,b", "0,1", "-3", "1.5"])
def test_parse_int_list_refuses(text):
    with pytest.raises(ValueError, match="expected positive integers separated by commas"):
        parse_int_list(text)


@pytest.mark.parametrize("metrics,shape", [(1, (1, 1)), (10, (10, 1)), (100, (10, 10)), (1000, (10, 100)), (25, (10, 2))])
def test_batch_shape(metrics, shape):
    assert batch_shape(metrics) == shape


@pytest.mark.parametrize("metrics", [1, 10, 100, 1000])
def test_make_batch_has_unique_keys_and_steps(metrics):
    batch = make_batch(metrics, 40, 1_700_000_000_000)
    assert len(batch) == metrics
    assert len({(m.key, m.step) for m in batch}) == metrics
    assert min(m.step for m in batch) == 40


def _parse(*argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


def test_full_defaults_and_quick_sizes():
    full = options_from(_parse())
    assert (full.clients, full.batch_sizes, full.scale_runs, full.scale_metrics) == ([1, 8, 32, 64], [1, 10, 100, 1000], 1_000_000, 10_000_000)
    assert (full.stack_cells, full.chatty_clients) == ([(1, 1), (32, 10), (32, 100)], 32)
    quick = options_from(_parse("--quick"))
    assert quick.scale_runs == QUICK["scale_runs"] < FULL["scale_runs"]
    assert len(quick.stack_cells) < len(full.stack_cells) and quick.chatty_clients < full.chatty_clients
    assert options_from(_parse("--quick", "--scale-runs", "500")).scale_runs == 500  # an explicit value wins


@pytest.mark.parametrize("argv,message", [
    (["--batch-sizes", "1,2000"], "at most 1,000 metrics"),
    (["--duration", "0"], "expected 1 to 600 seconds"),
    (["--scale-runs", "5"], "--scale-runs must be 0"),
    (["--variants", "stock-sqlite,foo"], "--variants 'stock-sqlite,foo' is not allowed"),
    (["--clients", "x"], "expected positive integers"),
])
def test_bad_options_are_one_sentence(argv, message):
    with pytest.raises(ValueError, match=message) as exc:
        options_from(_parse(*argv))
    assert "\n" not in str(exc.value)
