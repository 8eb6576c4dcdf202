"""`mlflow-infra plan`, `validate` and `classes`: what an environment will build and why.

Exit codes: 0 fine, 2 bad input (one line per problem, no traceback).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..planning import catalogue
from ..planning.plan import CapacityPlan, plan
from ..spec import SpecInvalid, environment_files, load_environment
from .console import EXIT_INVALID, console, err


def _load_and_plan(env_or_file: str, stacks_dir: Path) -> CapacityPlan:
    return plan(load_environment(env_or_file, stacks_dir))


def cmd_plan(args: argparse.Namespace) -> int:
    result = _load_and_plan(args.environment, Path(args.stacks_dir))
    if args.json:
        print(result.to_json())
        return 0
    render_plan(result, console())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    files = [Path(f) for f in args.files] or environment_files(Path(args.stacks_dir))
    if not files:
        err(f"{args.stacks_dir}: no environment files found; expected stacks/<env>.yaml files")
        return EXIT_INVALID
    failed = 0
    for path in files:
        try:
            result = _load_and_plan(str(path), Path(args.stacks_dir))
        except SpecInvalid as exc:
            failed += 1
            for error in exc.errors:
                err(str(error))
            continue
        db = result.database
        print(f"ok  {path}: {result.tier}, {'Aurora ' if db.engine.engine == 'aurora' else ''}{db.instance.instance_class}"
              f" + {db.replicas.count} {'reader' if db.engine.engine == 'aurora' else 'replica'}(s),"
              f" API {result.tracking.api.min_count}-{result.tracking.api.max_count} / UI {result.tracking.ui.min_count}-{result.tracking.ui.max_count},"
              f" ${result.cost.total_monthly_usd:,.0f}/month")
    return EXIT_INVALID if failed else 0


def cmd_classes(args: argparse.Namespace) -> int:
    table = Table(title="RDS for PostgreSQL classes in the catalogue")
    for column in ("class", "family", "vCPU", "memory GiB", "EBS baseline Mbps", "burst baseline"):
        table.add_column(column)
    for c in catalogue.instance_classes():
        table.add_row(c.name, c.family, str(c.vcpu), f"{c.memory_gib:g}", str(c.ebs_baseline_mbps),
                      f"{c.baseline_cpu_percent}%" if c.burstable else "")
    console().print(table)
    return 0


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False, expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def render_plan(p: CapacityPlan, console: Console) -> None:
    console.print(f"[bold]Plan for {p.environment}[/bold] ({p.tier}, {p.region}) from {p.source_file}")
    d = p.load
    load = _table("Load at peak", "quantity", "value")
    for label, value in [
        ("logging requests/s", f"{d.logging_requests_per_s:,.1f}"),
        ("write requests/s (with run lifecycle)", f"{d.write_requests_per_s:,.1f}"),
        ("metric rows/s", f"{d.metric_rows_per_s:,.0f}"),
        ("param + tag rows/s", f"{d.param_tag_rows_per_s:,.1f}"),
        ("UI read requests/s", f"{d.ui_read_requests_per_s:,.1f}"),
        ("metric rows/day", f"{d.metric_rows_per_day:,.0f}"),
        ("storage growth GiB/day", f"{d.storage_growth_gib_per_day:,.2f}"),
        ("storage at retention GiB", f"{d.storage_at_retention_gib:,.0f}"),
        ("hot set GiB", f"{d.hot_set_gib:,.1f}"),
    ]:
        load.add_row(label, value)
    console.print(load)
    console.print(f"  [dim]{d.reason}[/dim]")

    db = p.database
    s = db.storage
    e = db.engine
    engine_name = "Aurora PostgreSQL" if e.engine == "aurora" else "RDS for PostgreSQL"
    dbt = _table(f"Database ({engine_name} {db.engine_version})", "decision", "value", "why")
    dbt.add_row("engine", engine_name + (f" ({'I/O-Optimized' if e.aurora_storage_type else 'Standard'})" if e.engine == "aurora" else ""),
                e.reason)
    dbt.add_row("monthly database cost", f"RDS ${e.costs.rds:,.0f} | Aurora Standard ${e.costs.aurora_standard:,.0f}"
                f" | I/O-Optimized ${e.costs.aurora_io_optimized:,.0f}", e.costs.detail)
    dbt.add_row("instance class", f"{db.instance.instance_class} ({db.instance.vcpu} vCPU, {db.instance.memory_gib:g} GiB)", db.instance.reason)
    if e.engine == "aurora":
        dbt.add_row("storage", f"Aurora {'I/O-Optimized' if e.aurora_storage_type else 'Standard'}, grows by itself",
                    f"{p.load.storage_at_retention_gib:,.0f} GiB at retention; {e.costs.aurora_io_requests_per_month / 1e6:,.0f}"
                    " million write I/Os a month")
        dbt.add_row("readers", f"{e.readers_min}-{e.readers_max} (autoscaling on CPU)", db.replicas.reason)
        dbt.add_row("parameters left to Aurora", ", ".join(name for name, _ in db.left_to_engine),
                    "; ".join(sorted({why for _, why in db.left_to_engine})))
    else:
        dbt.add_row("storage", f"{s.allocated_gib:,} GiB gp3, autoscaling to {s.max_allocated_gib:,} GiB", s.reason)
        dbt.add_row("IOPS / throughput", f"{s.iops:,} / {s.throughput_mibps} MiB/s" + (" (provisioned)" if s.iops_provisioned else " (gp3 baseline)"), f"need {s.needed_iops:,} IOPS, {s.needed_mibps} MiB/s")
        dbt.add_row("read replicas", str(db.replicas.count), db.replicas.reason)
    dbt.add_row("multi-AZ", str(db.multi_az.value).lower(), db.multi_az.reason)
    dbt.add_row("durability", db.durability.value, db.durability.reason)
    dbt.add_row("backup retention", f"{db.backup_retention_days.value} days", db.backup_retention_days.reason)
    dbt.add_row("deletion protection", str(db.deletion_protection.value).lower(), db.deletion_protection.reason)
    r = p.recovery
    dbt.add_row("losing the region", r.mode + (f" to {r.secondary_region} (${r.monthly_usd:,.0f}/month)" if r.secondary_region else ""),
                f"{r.reason}; recovery point: {r.recovery_point}; recovery time: {r.recovery_time}")
    dbt.add_row("monitoring", f"enhanced every {db.monitoring_interval_seconds} s, Performance Insights {db.performance_insights_retention_days} days", "see what the database waits on")
    console.print(dbt)

    b = p.connection_budget
    bt = _table("Connection budget (at maximum autoscale)", "item", "value")
    for tier in p.tracking.tiers:
        bt.add_row(f"{tier.role.upper()} pool per engine",
                   f"pool {tier.pool.pool_size} + overflow {tier.pool.max_overflow}, recycle {tier.pool.recycle_seconds} s")
    bt.add_row("API connections (primary)", str(b.api_connections))
    bt.add_row("UI connections (primary / each replica)", f"{b.ui_primary_connections} / {b.ui_replica_connections}")
    bt.add_row("reserve (superuser, replication, admin)", str(b.reserve))
    bt.add_row("max_connections (class holds)", f"{b.max_connections} ({b.memory_ceiling})")
    bt.add_row("RDS Proxy", f"yes, {b.proxy.max_connections_percent}% of max_connections, {b.proxy.max_idle_connections_percent}% idle"
               if b.proxy else "no")
    bt.add_row("headroom", str(b.headroom))
    console.print(bt)
    console.print(f"  [dim]{b.reason}[/dim]")

    t = p.tracking
    ft = _table(f"Tracking servers (MLflow {t.mlflow_version} on {t.compute})", "tier", "size", "workers", "min-max", "req/s per unit", "why")
    for f in t.tiers:
        size = f.instance_type + f" ({f.vcpu:g} vCPU, {f.memory_gib:g} GiB)" if f.instance_type else f"{f.vcpu:g} vCPU, {f.memory_gib:g} GiB"
        ft.add_row(f.role, size, str(f.workers), f"{f.min_count}-{f.max_count}", f"{f.requests_per_s_per_unit:,.0f}", f.reason)
    console.print(ft)
    for server in (tier.server for tier in t.tiers):
        console.print(f"  [bold]{server.role}[/bold]: {' '.join(server.command)}")
        env = ", ".join(f"{k}={v}" for k, v in sorted(server.environment.items()))
        console.print(f"    env: {env}")
        console.print(f"    from secrets: {', '.join(server.secret_environment)}; open files: {server.nofile}")
    console.print(f"  [dim]{t.ui_reads_from_replica.reason}[/dim]")
    console.print("[bold]Training jobs' environment[/bold] (client_environment; batches mlflow.log_metric calls):")
    console.print("  " + " ".join(f"{k}={v}" for k, v in sorted(p.client_environment.items())))
    console.print(f"  [dim]{p.client_environment_reason}[/dim]")

    pt = _table("PostgreSQL parameters", "name", "primary", "replica", "unit", "apply", "why")
    replica = {x.name: x for x in db.replica_parameters}
    names = [x.name for x in db.primary_parameters] + [n for n in replica if n not in {x.name for x in db.primary_parameters}]
    primary = {x.name: x for x in db.primary_parameters}
    for name in names:
        ref = primary.get(name) or replica[name]
        pt.add_row(name, primary[name].value if name in primary else "-", replica[name].value if name in replica else "-",
                   ref.unit, ref.apply_method, ref.reason)
    console.print(pt)

    it = _table("Index migration (after mlflow db upgrade)", "statement", "why")
    for index in p.indexes.indexes:
        it.add_row(index.create_sql, index.reason)
    for stat in p.indexes.statistics:
        it.add_row(stat.create_sql, stat.reason)
    for setting in p.indexes.table_settings:
        it.add_row(setting.alter_sql, setting.reason)
    console.print(it)

    pl = p.placement
    console.print(f"[bold]Placement[/bold]: {pl.reason}")
    console.print(f"  peering: {str(pl.peering.value).lower()} ({pl.peering.reason}); interface endpoints: {str(pl.interface_endpoints.value).lower()} ({pl.interface_endpoints.reason})")

    at = _table(f"Alarms ({len(p.alarms)}, {p.alarms[0].datapoints_to_alarm} of {p.alarms[0].evaluation_periods}"
                f" {p.alarms[0].period_seconds} s datapoints)", "alarm", "metric", "threshold", "why")
    for alarm in p.alarms:
        at.add_row(alarm.key, f"{alarm.namespace} {alarm.metric} ({alarm.statistic or alarm.extended_statistic})",
                   f"{'>' if alarm.comparison.startswith('Greater') else '<'} {alarm.threshold:,.10g}", alarm.reason)
    console.print(at)

    c = p.cost
    ct = _table(f"Monthly cost estimate, USD ({c.prices_region} prices recorded {c.recorded})", "component", "USD/month", "detail")
    for line in c.lines:
        ct.add_row(line.component, f"{line.monthly_usd:,.2f}", line.detail)
    ct.add_row("[bold]total[/bold]", f"[bold]{c.total_monthly_usd:,.2f}[/bold]", f"at maximum autoscale: {c.at_max_autoscale_monthly_usd:,.2f}")
    console.print(ct)
    for note in c.notes:
        console.print(f"  [dim]{note}[/dim]")
    for warning in p.warnings:
        console.print(f"[yellow]warning[/yellow]: {warning}")


def register(subparsers) -> None:
    p_plan = subparsers.add_parser("plan", help="print what an environment will build and why")
    p_plan.add_argument("environment", help="an environment name (prod -> stacks/prod.yaml) or a file path")
    p_plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    p_plan.set_defaults(func=cmd_plan)

    p_validate = subparsers.add_parser("validate", help="check environment files (default: every file in stacks/)")
    p_validate.add_argument("files", nargs="*", help="files to check instead of every file in stacks/")
    p_validate.set_defaults(func=cmd_validate)

    p_classes = subparsers.add_parser("classes", help="list the database instance classes the planner chooses from")
    p_classes.set_defaults(func=cmd_classes)
