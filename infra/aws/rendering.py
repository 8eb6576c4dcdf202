"""Rendered artifacts of a plan, as plain data: the ECS container definitions (which EC2 instances
run too, through `instance.user_data`), names.

Pure functions of the plan and a few runtime strings (endpoints, ARNs), so tests can check them
against botocore's service models without Pulumi. The components only call these.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..endpoints import (APP_PASSWORD_ENV, APP_USERNAME_ENV, AUTH_ENV, AUTH_SECRET_KEYS, DATABASE_NAME, DB_CLUSTER_ENV, DB_INSTANCE_ENV,
                         READ_FALLBACK_HOST_ENV)
from ..planning.plan import TierPlan

ENTRYPOINT = "mlflow-infra-entrypoint"
LOG_RETENTION_DAYS = 30


def health_command(port: int, path: str) -> str:
    """The container health check, through Python: the slim image has no curl."""
    return ("python -c \"import urllib.request; "
            f"urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=3)\"")


@dataclass(frozen=True)
class Runtime:
    """Values only known once resources exist (Pulumi outputs, resolved)."""

    image: str
    region: str
    db_host: str
    db_port: int
    replica_host: str | None
    """The replica this service's UI tasks read (one UI service per replica)."""
    secret_arn: str
    """The servers' secret: the application role's JSON username and password."""
    log_group: str
    artifacts_destination: str
    load_balancer_host: str
    auth_secret_arn: str | None = None
    """The basic-auth secret (JSON secret_key, admin_username, admin_password); tiers with auth need it."""
    master_secret_arn: str | None = None
    """The master user's secret: the migrate step logs in with it and creates (or updates) the
    application role from `secret_arn`. None: the migrate step logs in with `secret_arn` and manages no role."""
    primary_host: str | None = None
    """The primary's own address, for the migrate step (RDS Proxy, if any, authenticates the app role
    only); None: `db_host`."""
    primary_instance_id: str | None = None
    """The primary's RDS instance identifier: the migrate step snapshots it before a schema upgrade."""
    primary_cluster_id: str | None = None
    """Aurora: the cluster, which the migrate step snapshots instead."""


def database_environment(rt: Runtime, tier: TierPlan | None = None) -> dict[str, str]:
    """The primary, and for a tier that reads a replica its replica (and, with a single replica, the
    primary's endpoint to fall back to while the replica cannot be reached)."""
    env = {"DB_HOST": rt.db_host, "DB_PORT": str(rt.db_port), "DB_NAME": DATABASE_NAME, "DB_SSLMODE": "require"}
    if tier is not None and tier.reads_from_replica:
        if not rt.replica_host:
            raise ValueError(f"the {tier.role} tier reads a replica but Runtime.replica_host is not set;"
                             " expected the address of the replica this service reads")
        env["DB_REPLICA_HOST"] = rt.replica_host
        if tier.read_fallback:
            env[READ_FALLBACK_HOST_ENV] = rt.db_host
    return env


def server_environment(tier: TierPlan, rt: Runtime) -> dict[str, str]:
    """The server's plain environment on ECS and EC2 alike: the plan's, the database, the placeholders."""
    return {**tier.server.environment, **database_environment(rt, tier),
            "MLFLOW_ARTIFACTS_DESTINATION": rt.artifacts_destination,
            "MLFLOW_LOAD_BALANCER_HOST": rt.load_balancer_host}


def secrets(secret_arn: str, username: str = "DB_USERNAME", password: str = "DB_PASSWORD") -> list[dict[str, str]]:
    """A database secret's JSON keys (username, password), injected by ECS: never in plain environment."""
    return [{"name": username, "valueFrom": f"{secret_arn}:username::"},
            {"name": password, "valueFrom": f"{secret_arn}:password::"}]


def migrate_secrets(rt: Runtime) -> list[dict[str, str]]:
    """The migrate container's: it logs in as the master user (DB_*) and sets the application role
    up from the app secret (APP_DB_*). Without a master secret, the app secret alone, as before."""
    if not rt.master_secret_arn:
        return secrets(rt.secret_arn)
    return [*secrets(rt.master_secret_arn), *secrets(rt.secret_arn, APP_USERNAME_ENV, APP_PASSWORD_ENV)]


def _auth_secret_arn(tier: TierPlan, rt: Runtime) -> str | None:
    if not tier.server.auth_secret_environment:
        return None
    if not rt.auth_secret_arn:
        raise ValueError(f"the {tier.role} tier runs basic-auth (tracking.auth: basic) but Runtime.auth_secret_arn is not set;"
                         f" expected the ARN of a secret with JSON keys {', '.join(AUTH_SECRET_KEYS.values())}")
    return rt.auth_secret_arn


def auth_secrets(tier: TierPlan, rt: Runtime) -> list[dict[str, str]]:
    """The basic-auth secret's JSON keys (Flask secret key, admin user and password), injected by ECS
    into the server only: the migration needs no admin credentials."""
    arn = _auth_secret_arn(tier, rt)
    if arn is None:
        return []
    return [{"name": name, "valueFrom": f"{arn}:{AUTH_SECRET_KEYS[name]}::"} for name in tier.server.auth_secret_environment]


def migrate_environment(tier: TierPlan, rt: Runtime) -> dict[str, str]:
    """The database (the primary itself, not RDS Proxy), and whether the basic-auth user store is migrated too."""
    env = database_environment(rt)
    if rt.primary_host:
        env["DB_HOST"] = rt.primary_host
    if rt.primary_cluster_id:
        # Aurora: the snapshot before an upgrade is the cluster's (its instances have no snapshots of their own)
        env.update({DB_CLUSTER_ENV: rt.primary_cluster_id, "AWS_REGION": rt.region})
    elif rt.primary_instance_id:
        # the snapshot before an upgrade calls RDS in the primary's region (EC2's docker sets no region)
        env.update({DB_INSTANCE_ENV: rt.primary_instance_id, "AWS_REGION": rt.region})
    if AUTH_ENV in tier.server.environment:
        env[AUTH_ENV] = tier.server.environment[AUTH_ENV]
    return env


def _pairs(env: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def container_definitions(tier: TierPlan, rt: Runtime) -> list[dict]:
    """The task's containers: for the API, the migration (the schema upgrade once per deploy, the index
    migration) and the server, which starts only after the migration exits 0; for the UI, the server
    alone, which waits for the schema its MLflow expects."""
    server = tier.server
    env = server_environment(tier, rt)
    logs = {"logDriver": "awslogs", "options": {"awslogs-group": rt.log_group, "awslogs-region": rt.region,
                                                  "awslogs-stream-prefix": tier.role}}
    migrate = {
        "name": "migrate",
        "image": rt.image,
        "essential": False,
        "entryPoint": [ENTRYPOINT],
        "command": ["migrate"],
        "environment": _pairs(migrate_environment(tier, rt)),
        "secrets": migrate_secrets(rt),
        "logConfiguration": logs,
    }
    main = {
        "name": "mlflow",
        "image": rt.image,
        "essential": True,
        "entryPoint": [ENTRYPOINT],
        "command": ["server", "--", *server.command],
        "environment": _pairs(env),
        "secrets": [*secrets(rt.secret_arn), *auth_secrets(tier, rt)],
        "portMappings": [{"containerPort": port, "protocol": "tcp"} for port in (server.port, server.ready_port) if port],
        "ulimits": [{"name": "nofile", "softLimit": server.nofile, "hardLimit": server.nofile}],
        "healthCheck": {"command": ["CMD-SHELL", health_command(server.port, server.health_path)], "interval": 15, "timeout": 5,
                        "retries": 3, "startPeriod": 90},
        "dependsOn": [{"containerName": "migrate", "condition": "SUCCESS"}],
        "logConfiguration": logs,
    }
    if not tier.runs_migrations:
        del main["dependsOn"]
        return [main]
    return [migrate, main]
