"""`mlflow-infra doctor --local`: the checks against the topology `mlflow-infra local up` runs.

The plan is the one the topology was brought up from (its state.json names the environment file),
with the parameter sets scaled to this machine exactly as the topology wrote them; the databases
are reached as the topology's superuser on 127.0.0.1. AWS sources do not exist here and are said so.
"""

from __future__ import annotations

from pathlib import Path

from ..local.processes import group_pids
from ..local.topology import LocalTopology
from ..planning.indexes import index_migration
from ..planning.plan import plan
from ..spec import load_environment
from . import database, prometheus
from .findings import Report, Source
from .processes import open_files, open_files_findings

REMEDIES = {
    "index": "run the migrate step again, which builds every planned index: mlflow-infra local down && mlflow-infra local up",
    # ALTER SYSTEM writes postgresql.auto.conf, which wins over the planned settings at every start
    "parameter": "ALTER SYSTEM RESET {name}; SELECT pg_reload_conf(); (the topology writes the planned value at start)",
    "restart": "restart the node: mlflow-infra local down && mlflow-infra local up",
    # the topology starts each server with the plan's limit, capped at this shell's hard limit
    "open-files": "raise the hard limit of the shell that runs mlflow-infra local up (ulimit -Hn) to the plan's"
                  " (mlflow-infra plan ENV: open files), or fewer workers per server (tracking.ROLE.workers)",
}


def diagnose(root: Path) -> Report:
    """Every check the local topology allows; a missing topology or database is a source not reached."""
    topology = LocalTopology.at(root)
    state = topology.read_state()
    if state is None:
        return Report("?", sources=[Source("topology", False, f"{root} has no state.json: bring it up with mlflow-infra local up")])
    report = Report(state["environment"])
    try:
        capacity = plan(load_environment(state["source_file"]))
    except Exception as exc:  # noqa: BLE001 (a changed or removed environment file: said, not raised)
        report.sources.append(Source("plan", False, f"cannot plan {state['source_file']}: {str(exc).splitlines()[0]}"))
        return report
    planned = LocalTopology(topology.root, capacity)
    settings = planned.settings()
    migration = index_migration()
    planned_indexes = [(i.name, i.table) for i in migration.indexes]
    import psycopg

    report.sources.append(Source("aws", True, "not checked: the local topology has no AWS resources"))
    for entry in state["databases"]:
        node = entry["name"]
        try:
            with psycopg.connect(entry["uri"], autocommit=True, connect_timeout=5) as conn:
                if node == "primary":
                    found, facts = database.check_primary(conn, settings["primary"][0], planned_indexes,
                                                          capacity.database.replicas.count, REMEDIES)
                    report.facts.update(facts)
                else:
                    found = database.check_node(conn, settings["replica"][0], REMEDIES, node)
        except psycopg.Error as exc:
            text = str(exc).strip().splitlines()
            report.sources.append(Source(node, False, f"{entry['uri']} did not answer: {text[0] if text else type(exc).__name__}"))
            continue
        report.findings.extend(found)
        report.sources.append(Source(node, True, f"{entry['uri']}: indexes, pg_settings, connections, tables, replication"
                                     if node == "primary" else f"{entry['uri']}: pg_settings, connections"))
    check_servers(state, report)
    authorization = planned.authorization()
    found, sources = prometheus.check_servers([(s["name"], s["url"]) for s in state.get("servers", [])],
                                              {"Authorization": authorization} if authorization else {})
    # MLflow's /metrics has no path label: per-endpoint counts (batching) come from the access log
    logged, log_sources = prometheus.check_access_logs([(s["name"], Path(s["log"])) for s in state.get("servers", [])])
    report.findings.extend(found + logged)
    report.sources.extend(sources + log_sources)
    return report


def check_servers(state: dict, report: Report) -> None:
    """Every server's processes: open files against their limits."""
    rows, missing = [], []
    for server in state.get("servers", []):
        pids = group_pids(server["pid"]) if server.get("pid") else []
        if not pids:
            missing.append(server["name"])
        for pid in pids:
            found = open_files(pid)
            if found:
                rows.append((server["name"], pid, *found))
    report.findings.extend(open_files_findings(rows, REMEDIES["open-files"]))
    if missing:
        report.sources.append(Source("servers", False, f"no process of the {', '.join(missing)} server(s): start them with"
                                     " mlflow-infra local up"))
    else:
        report.sources.append(Source("servers", True, f"{len(rows)} processes of {len(state.get('servers', []))} servers:"
                                     " open files (/proc)"))
