"""Pure renderings of the benchmark's results: markdown tables with ratios, the calibration fit, and
the PNG plots (matplotlib, from the `bench` extra)."""

from __future__ import annotations

import re
from pathlib import Path

from .stats import linear_fit, ratio

MISSING = "-"


def fmt(value, digits: int = 0) -> str:
    """A number with thousands separators, or '-' when missing."""
    if value is None:
        return MISSING
    if isinstance(value, int) and digits == 0:
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}x"


def fmt_ms(value: float | None) -> str:
    """Milliseconds with the precision that matters at that size."""
    if value is None:
        return MISSING
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def short_error(text: str) -> str:
    """'ReadTimeoutError on /api/2.0/mlflow/runs/log-batch' from MLflow's long client exception text."""
    found = re.search(r"url: (\S+) \(Caused by (\w+)", text)
    if found:
        return f"{found.group(2)} on {found.group(1)}"
    return text[:160]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def by_cell(rows: list[dict]) -> dict[tuple[str, int, int], dict]:
    return {(r["variant"], r["clients"], r["metrics_per_call"]): r for r in rows}


def with_ratios(rows: list[dict], baseline: str) -> list[dict]:
    """Each ingest row with metrics/s and p99 as ratios to the baseline variant's same cell."""
    cells = by_cell(rows)
    out = []
    for r in rows:
        base = cells.get((baseline, r["clients"], r["metrics_per_call"]))
        out.append({**r, "throughput_ratio": ratio(r.get("metrics_per_s"), base and base.get("metrics_per_s")),
                    "p99_ratio": ratio(r.get("p99_ms"), base and base.get("p99_ms"))})
    return out


def ingest_table(rows: list[dict], baseline: str) -> str:
    body = []
    for r in sorted(with_ratios(rows, baseline), key=lambda r: (r["clients"], r["metrics_per_call"], r["variant"])):
        body.append([str(r["clients"]), fmt(r["metrics_per_call"]), r["variant"], fmt(r["metrics_per_s"]),
                     fmt(r["requests_per_s"], 1), fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]), fmt(r["errors"]),
                     fmt_ratio(r["throughput_ratio"])])
    return table(["clients", "metrics/call", "variant", "metrics/s", "requests/s", "p50 ms", "p99 ms", "errors",
                  f"metrics/s vs {baseline}"], body)


def ratio_matrix(rows: list[dict], baseline: str) -> str:
    """Clients x batch size, one column per other variant: its metrics/s over the baseline's."""
    ratios = with_ratios(rows, baseline)
    variants = [v for v in dict.fromkeys(r["variant"] for r in rows) if v != baseline]
    cells = by_cell(ratios)
    keys = sorted({(r["clients"], r["metrics_per_call"]) for r in rows})
    body = [[str(c), fmt(b)] + [fmt_ratio(cells.get((v, c, b), {}).get("throughput_ratio")) for v in variants]
            for c, b in keys]
    return table(["clients", "metrics/call"] + [f"{v} / {baseline}" for v in variants], body)


def stacks_table(rows: list[dict], planned: str) -> str:
    """The server stacks, cell by cell, with metrics/s and p99 against the planned stack's."""
    body = []
    for r in sorted(with_ratios(rows, planned), key=lambda r: (r["clients"], r["metrics_per_call"])):
        body.append([str(r["clients"]), fmt(r["metrics_per_call"]), r["variant"], fmt(r["metrics_per_s"]), fmt_ms(r["p50_ms"]),
                     fmt_ms(r["p99_ms"]), fmt(r["errors"]), fmt_ms(r["server_cpu_ms_per_request"]),
                     fmt_ratio(r["throughput_ratio"]), fmt_ratio(r["p99_ratio"])])
    return table(["clients", "metrics/call", "server", "metrics/s", "p50 ms", "p99 ms", "errors", "server CPU ms/request",
                  f"metrics/s vs {planned}", f"p99 vs {planned}"], body)


def chatty_table(rows: list[dict]) -> str:
    """Chatty clients: acknowledged metrics/s, each row against the stock SQLite server without the environment."""
    base = next((r for r in rows if r["variant"] == "stock-sqlite" and r["client_environment"] == "none"), None)
    body = [[r["variant"], r["client_environment"], fmt(r["calls"]), fmt(r["stored"]), fmt(r["missing"]), fmt(r["errors"]),
             f"{r['elapsed_s']:.1f}", fmt(r["metrics_per_s"]), fmt_ms(r["call_p50_ms"]),
             fmt_ratio(ratio(r["metrics_per_s"], base and base["metrics_per_s"]))] for r in rows]
    return table(["variant", "client environment", "log_metric calls", "rows stored", "missing", "errors", "seconds (to flush)",
                  "acknowledged metrics/s", "call p50 ms", "vs stock-sqlite without"], body)


def reads_table(rows: list[dict]) -> str:
    body = []
    for r in rows:
        body.append([r["variant"], r["reads_from"], fmt_ms(r["idle"]["p50_ms"]), fmt_ms(r["idle"]["p99_ms"]),
                     fmt_ms(r["storm"]["p50_ms"]), fmt_ms(r["storm"]["p99_ms"]),
                     fmt_ratio(ratio(r["storm"]["p99_ms"], r["idle"]["p99_ms"])),
                     fmt(r["idle"]["errors"] + r["storm"]["errors"]), fmt(r["storm_metrics_per_s"]),
                     fmt(r.get("storm_errors", 0))])
    return table(["variant", "search_runs served by", "idle p50 ms", "idle p99 ms", "storm p50 ms", "storm p99 ms",
                  "storm/idle p99", "read errors", "storm metrics/s", "storm write errors"], body)


def search_table(search: dict) -> str:
    body = []
    for name, before in search["stock"].items():
        after = search["migrated"][name]
        body.append([name, fmt(before["rows"]), fmt_ms(before["median_ms"]), fmt_ms(after["median_ms"]),
                     fmt_ratio(ratio(before["median_ms"], after["median_ms"]))])
    return table(["query", "rows", "stock schema ms", "with index migration ms", "speedup"], body)


def ceiling_table(rows: list[dict]) -> str:
    body = [[r["variant"], fmt(r["copy_rows_per_s"]), fmt(r["insert_rows_per_s"]), fmt(r["best_api_metrics_per_s"]),
             f"{r['api_fraction']:.0%}" if r.get("api_fraction") is not None else MISSING] for r in rows]
    return table(["PostgreSQL of", "COPY rows/s", "1,000-row INSERT rows/s", "best API metrics/s", "API / best raw"], body)


def best_api_rate(rows: list[dict], variant: str) -> float | None:
    rates = [r["metrics_per_s"] for r in rows if r["variant"] == variant and r.get("metrics_per_s")]
    return max(rates) if rates else None


def calibration(rows: list[dict], variant: str) -> dict | None:
    """Server CPU per request = fixed + per_metric x metrics, fitted over the error-free cells of `variant`."""
    points = [(r["metrics_per_call"], r["server_cpu_ms_per_request"]) for r in rows
              if r["variant"] == variant and r.get("server_cpu_ms_per_request") is not None and r["errors"] == 0
              and r["requests"] > 0]
    if len({x for x, _ in points}) < 2:
        return None
    fit = linear_fit([x for x, _ in points], [y for _, y in points])
    return {"variant": variant, "fixed_ms": fit["fixed"], "per_metric_ms": fit["slope"], "r2": fit["r2"],
            "points": len(points)}


def calibration_table(rows: list[dict], variant: str) -> str:
    sizes = sorted({r["metrics_per_call"] for r in rows if r["variant"] == variant})
    clients = sorted({r["clients"] for r in rows if r["variant"] == variant})
    cells = by_cell(rows)
    body = [[str(c)] + [fmt_ms(cells.get((variant, c, b), {}).get("server_cpu_ms_per_request")) for b in sizes]
            for c in clients]
    return table(["clients"] + [f"{b} metrics/call" for b in sizes], body)


def yaml_block(fit: dict, ui_ms: float | None, provenance: str) -> str:
    """The server_cpu_seconds block for infra/data/measurements.yaml, as seconds."""
    lines = [f"server_cpu_seconds:       # {provenance}",
             f"  per_logging_request: {fit['fixed_ms'] / 1000:.5f}",
             f"  per_metric: {fit['per_metric_ms'] / 1000:.7f}"]
    if ui_ms is not None:
        lines.append(f"  per_ui_request: {ui_ms / 1000:.4f}")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    meta = results["meta"]
    baseline = meta["baseline"]
    parts = [f"# mlflow-infra bench: {meta['date']}", "",
             f"`{meta['command']}` on {meta['machine']}; MLflow {meta['mlflow']}, {meta['postgres']}.",
             "Every figure of one table comes from the same run; ratios compare variants side by side.", ""]
    labels = meta.get("labels", {})
    if labels:
        parts += ["Variants: " + "; ".join(f"`{k}` = {v}" for k, v in labels.items()) + ".", ""]
    ingest = results.get("ingest") or []
    if ingest:
        parts += ["## Ingest: `log_batch` through MlflowClient", "",
                  f"{meta['duration_s']:g} s per cell; clients are threads in {meta['load_processes']} load processes.", "",
                  ratio_matrix(ingest, baseline), "", ingest_table(ingest, baseline), ""]
    stacks = results.get("stacks") or []
    if stacks:
        from .stacks import PLANNED

        parts += ["## Server stack: the planned API's environment under each server", "",
                  "Each server runs the planned API's environment (database URIs, settings) with the pool the planner gives"
                  " a server that runs as many requests per worker at once, on the planned topology's primary; "
                  f"{meta['duration_s']:g} s per cell, one stack after another in each cell.", "",
                  stacks_table(stacks, PLANNED), ""]
    chatty = results.get("chatty") or []
    if chatty:
        parts += ["## Chatty clients: one metric per `mlflow.log_metric` call", "",
                  f"{chatty[0]['clients']} clients, each on its own run, calling the fluent `mlflow.log_metric` for"
                  f" {meta['duration_s']:g} s (`with mlflow.start_run():` as a training job does); each load process flushes"
                  " its queue (`mlflow.flush_async_logging`) before its clock stops, and only rows read back from the server"
                  " count.", "", chatty_table(chatty), ""]
    reads = results.get("reads") or []
    if reads:
        parts += ["## Read isolation: `search_runs` (100 runs with params, tags, metrics)", "",
                  f"One UI client; the write storm is {meta['storm']} on the API.", "", reads_table(reads), ""]
    ceiling = results.get("ceiling") or []
    if ceiling:
        parts += ["## Ceiling: the same metric rows straight into the same PostgreSQL", "", ceiling_table(ceiling), ""]
    search = results.get("search")
    if search:
        shape = search["rows"]
        parts += ["## Search at scale", "",
                  f"{fmt(shape['runs'])} runs, {fmt(shape['params'])} params, {fmt(shape['tags'])} tags,"
                  f" {fmt(shape['latest_metrics'])} latest metrics, {fmt(shape['metrics'])} metric rows"
                  f" ({search['database_gib']:.1f} GiB; generated in {search['seconds']['total']:.0f} s);"
                  f" searches in one experiment of {fmt(search['experiment_runs'])} runs, median of"
                  f" {meta['search_repeats']} warm calls through MlflowClient on the store; index migration took"
                  f" {search['migration_seconds']:.0f} s."
                  + (f" From an earlier run: `{search['from_run']}`." if search.get("from_run") else ""), "",
                  search_table(search), ""]
    cal = results.get("calibration")
    if cal:
        parts += ["## Calibration: API server CPU per `log_batch`", "",
                  f"CPU seconds of the `{cal['variant']}` API server processes over each cell / requests, in ms:", "",
                  calibration_table(ingest, cal["variant"]), "",
                  f"Fit over {cal['points']} cells: {cal['fixed_ms']:.2f} ms + {cal['per_metric_ms']:.4f} ms per metric"
                  f" (R² {cal['r2']:.2f}); UI `search_runs`: {fmt_ms(cal.get('ui_ms_per_request'))} ms per request.", "",
                  "```yaml", cal["yaml"], "```", ""]
    for note in results.get("notes") or []:
        parts.append(f"- {note}")
    return "\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# plots

def plots(results: dict, out: Path) -> list[Path]:
    """PNG files: metrics/s and p99 by batch size per client count; search before/after; read isolation."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written = []
    ingest = results.get("ingest") or []
    if ingest:
        clients = sorted({r["clients"] for r in ingest})
        for metric, name, ylabel in (("metrics_per_s", "ingest_throughput.png", "metrics/s"),
                                     ("p99_ms", "ingest_p99.png", "p99 latency, ms")):
            fig, axes = plt.subplots(1, len(clients), figsize=(4.5 * len(clients), 3.6), squeeze=False)
            for ax, c in zip(axes[0], clients):
                for variant in dict.fromkeys(r["variant"] for r in ingest):
                    pts = sorted((r["metrics_per_call"], r[metric]) for r in ingest
                                 if r["variant"] == variant and r["clients"] == c and r[metric] is not None)
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=variant)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_title(f"{c} client{'s' if c > 1 else ''}")
                ax.set_xlabel("metrics per log_batch")
                ax.set_ylabel(ylabel)
                ax.grid(True, which="both", alpha=0.3)
            axes[0][0].legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(out / name, dpi=90)
            plt.close(fig)
            written.append(out / name)
    search = results.get("search")
    if search:
        names = list(search["stock"])
        fig, ax = plt.subplots(figsize=(8, 3.8))
        ys = range(len(names))
        ax.barh([y + 0.2 for y in ys], [search["stock"][n]["median_ms"] for n in names], 0.4, label="stock schema")
        ax.barh([y - 0.2 for y in ys], [search["migrated"][n]["median_ms"] for n in names], 0.4, label="with index migration")
        ax.set_yticks(list(ys), names, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("median ms")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "search_before_after.png", dpi=90)
        plt.close(fig)
        written.append(out / "search_before_after.png")
    reads = results.get("reads") or []
    if reads:
        fig, ax = plt.subplots(figsize=(8, 3.4))
        labels = [f"{r['variant']}\n{r['reads_from']}" for r in reads]
        xs = range(len(reads))
        ax.bar([x - 0.2 for x in xs], [r["idle"]["p99_ms"] or 0 for r in reads], 0.4, label="idle")
        ax.bar([x + 0.2 for x in xs], [r["storm"]["p99_ms"] or 0 for r in reads], 0.4, label="write storm")
        ax.set_xticks(list(xs), labels, fontsize=7)
        ax.set_ylabel("search_runs p99, ms")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "read_isolation.png", dpi=90)
        plt.close(fig)
        written.append(out / "read_isolation.png")
    return written
