"""`mlflow-infra doctor ENV`: the checks against the deployment on AWS.

Sources, each optional (one that cannot be read is reported with the reason, never raised):
RDS (instances and parameter groups), ECS or the EC2 Auto Scaling groups, the load balancers and
CloudWatch (the plan's alarms over the window, the primary's I/O), and the primary database
itself through psycopg (as the master user from the stack's secret, or `--database-uri`). The
servers' Prometheus endpoints are not read on AWS: a scrape through the load balancer reaches one
task of many; the load balancers' metrics stand in for them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

from ..endpoints import ENVIRONMENT_TAG, MASTER_SECRET_TARGET, TARGET_TAG
from ..planning.indexes import index_migration
from ..planning.plan import CapacityPlan
from . import aws, database
from .findings import Report, Source

AWS_ERRORS: tuple[type[BaseException], ...]
try:
    from botocore.exceptions import BotoCoreError, ClientError

    AWS_ERRORS = (BotoCoreError, ClientError)
except ImportError:  # boto3 comes with [deploy]; without it every AWS source says so
    AWS_ERRORS = ()

DB_REMEDIES = {
    "index": "run the migrate step again (it builds every planned index): redeploy the API service, or run"
             " mlflow-infra-entrypoint migrate as an ECS task",
    "parameter": "pulumi up --stack {env} sets the planned value in the parameter group (a value set with ALTER"
                 " ROLE/DATABASE wins over it: RESET it)",
    "restart": "mlflow-infra db apply-pending {env}",
}
CONNECT_TIMEOUT_S = 5


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _read(report: Report, name: str, what: str, call: Callable):
    """Run one source's reads; a failure is the source not reached (and None)."""
    try:
        result = call()
    except AWS_ERRORS as exc:
        report.sources.append(Source(name, False, f"{what}: {_first_line(exc)}"))
        return None
    report.sources.append(Source(name, True, what))
    return result


def diagnose(capacity: CapacityPlan, session, window_hours: float = aws.DEFAULT_WINDOW_HOURS,
             database_uri: str | None = None, now: dt.datetime | None = None) -> Report:
    env, region = capacity.environment, capacity.region
    report = Report(env)
    if not AWS_ERRORS:
        report.sources.append(Source("aws", False, "boto3 is not installed: pip install -e '.[deploy]'"))
        return report
    client = lambda service: session.client(service, region_name=region)  # noqa: E731
    window_s = int(window_hours * 3600)
    rds = client("rds")  # one client for the instances and every parameter group

    databases = _read(report, "rds", f"RDS instances tagged {ENVIRONMENT_TAG}={env} in {region}",
                      lambda: aws.read_databases(rds, env))
    deployment = aws.Deployment(databases=databases or {})
    if databases is not None:
        if "primary" not in databases:
            report.sources[-1] = Source("rds", False, f"no RDS instance tagged {ENVIRONMENT_TAG}={env} and {TARGET_TAG}=primary"
                                        f" in {region}: is the stack deployed (pulumi up) in this account and region?")
        report.findings += aws.database_findings(databases, capacity)
        aurora = capacity.database.engine.engine == "aurora"
        # Aurora: the writer and every reader share the instance group (the plan's primary set)
        groups = {"primary": capacity.database.primary_parameters,
                  "replica": capacity.database.primary_parameters if aurora else capacity.database.replica_parameters}
        if aurora:
            _aurora_cluster(report, capacity, rds, deployment)
        seen = set()
        for node, db in databases.items():
            for group in (g["DBParameterGroupName"] for g in db.get("DBParameterGroups", [])):
                if group in seen:
                    continue
                seen.add(group)
                values = _read(report, f"rds:{group}", f"parameter group {group} (describe_db_parameters)",
                               lambda group=group: aws.read_parameters(rds, group))
                if values is not None:
                    planned = groups["primary" if node == "primary" else "replica"]
                    report.findings += aws.parameter_group_findings(values, planned, group, node, env)

    compute = capacity.tracking.compute
    if compute == "ecs":
        services = _read(report, "ecs", f"ECS services of the cluster tagged {ENVIRONMENT_TAG}={env}",
                         lambda: aws.read_ecs_services(client("ecs"), env))
    else:
        services = _read(report, "autoscaling", f"Auto Scaling groups tagged {ENVIRONMENT_TAG}={env}",
                         lambda: aws.read_autoscaling_groups(client("autoscaling"), env))
    if services is not None:
        deployment.services = services
        report.findings += aws.service_findings(services, capacity)
    balancers = _read(report, "elbv2", f"load balancers and target groups tagged {ENVIRONMENT_TAG}={env}",
                      lambda: aws.load_balancer_dimensions(aws.read_load_balancers(client("elbv2")), env))

    deployment.dimensions = {**deployment.dimensions,
                             **{n: {"DBInstanceIdentifier": d["DBInstanceIdentifier"]} for n, d in deployment.databases.items()},
                             **(balancers or {}), **aws.service_dimensions(deployment.services)}
    primary = deployment.databases.get("primary")
    queries = aws.metric_queries(capacity.alarms, deployment.dimensions,
                                 primary["DBInstanceIdentifier"] if primary else None, window_s)
    end = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    series = _read(report, "cloudwatch", f"{len(queries)} metrics over the last {window_hours:g} h (get_metric_data)",
                   lambda: aws.read_metrics(client("cloudwatch"), queries, end, window_s))
    if series is not None:
        report.findings += aws.alarm_findings(capacity.alarms, series, window_hours, env)
        storage = capacity.database.storage
        if capacity.database.engine.engine == "rds":  # Aurora's storage has no provisioned IOPS to compare with
            report.findings += aws.storage_findings(series, storage.iops, storage.throughput_mibps, env)

    report.sources.append(Source("prometheus", True, "not read on AWS: a scrape through the load balancer reaches one"
                                 " task; the load balancers' metrics stand in"))
    _database_source(report, capacity, client, primary, database_uri)
    return report


def master_credentials(secretsmanager, env: str) -> dict:
    """The master user's secret of this environment, found by its tags."""
    filters = [{"Key": "tag-key", "Values": [TARGET_TAG]}, {"Key": "tag-value", "Values": [MASTER_SECRET_TARGET]}]
    for page in secretsmanager.get_paginator("list_secrets").paginate(Filters=filters):
        for secret in page["SecretList"]:
            tags = aws.tag_map(secret.get("Tags"))
            if tags.get(ENVIRONMENT_TAG) == env and tags.get(TARGET_TAG) == MASTER_SECRET_TARGET:
                return json.loads(secretsmanager.get_secret_value(SecretId=secret["ARN"])["SecretString"])
    raise LookupError(f"no secret tagged {ENVIRONMENT_TAG}={env} and {TARGET_TAG}={MASTER_SECRET_TARGET}")


def _aurora_cluster(report: Report, capacity: CapacityPlan, rds, deployment: aws.Deployment) -> None:
    """The cluster (its dimensions for the readers' lag alarm) and its cluster parameter group against the plan's."""
    env = capacity.environment
    cluster = _read(report, "rds:cluster", f"the Aurora cluster tagged {ENVIRONMENT_TAG}={env} (describe_db_clusters)",
                    lambda: aws.read_cluster(rds, env))
    if cluster is None:
        return
    deployment.dimensions["cluster"] = {"DBClusterIdentifier": cluster["DBClusterIdentifier"]}
    group = cluster.get("DBClusterParameterGroup")
    if group:
        values = _read(report, f"rds:{group}", f"cluster parameter group {group} (describe_db_cluster_parameters)",
                       lambda: aws.read_cluster_parameters(rds, group))
        if values is not None:
            report.findings += aws.parameter_group_findings(values, capacity.database.cluster_parameters, group, "cluster", env)


def primary_uri(primary: dict, credentials: dict) -> str:
    """A libpq URI to the primary as the master user, TLS required (the parameter groups force it)."""
    from psycopg.conninfo import make_conninfo

    endpoint = primary.get("Endpoint") or {}
    return make_conninfo(host=endpoint.get("Address", ""), port=endpoint.get("Port", 5432),
                         dbname=primary.get("DBName") or "mlflow", user=credentials["username"],
                         password=credentials["password"], sslmode="require")


def _database_source(report: Report, capacity: CapacityPlan, client, primary: dict | None, database_uri: str | None) -> None:
    env = capacity.environment
    if database_uri is None:
        if primary is None:
            report.sources.append(Source("database", False, "no primary found, and no --database-uri"))
            return
        try:
            credentials = master_credentials(client("secretsmanager"), env)
        except (*AWS_ERRORS, LookupError, ValueError, KeyError) as exc:
            report.sources.append(Source("database", False, f"the master user's secret: {_first_line(exc)};"
                                         " or pass --database-uri"))
            return
        database_uri = primary_uri(primary, credentials)
    import psycopg

    remedies = {k: v.format(env=env) if "{env}" in v else v for k, v in DB_REMEDIES.items()}
    settings = {p.name: p.value for p in capacity.database.primary_parameters if not p.rds_only}
    planned_indexes = [(i.name, i.table) for i in index_migration().indexes]
    try:
        with psycopg.connect(database_uri, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            # Aurora readers share the writer's storage: nothing streams to them, so no replication to expect
            streaming = 0 if capacity.database.engine.engine == "aurora" else capacity.database.replicas.count
            found, facts = database.check_primary(conn, settings, planned_indexes, streaming, remedies)
    except psycopg.Error as exc:
        report.sources.append(Source("database", False, f"the primary did not answer: {_first_line(exc)} (its subnets are"
                                     " private: run the doctor inside the VPC, or pass --database-uri through a tunnel)"))
        return
    report.findings += found
    report.facts.update(facts)
    report.sources.append(Source("database", True, "the primary: indexes, pg_settings, connections, tables, replication,"
                                 " pg_stat_statements"))
