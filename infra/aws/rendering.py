"""Rendered artifacts of a plan, as plain data: ECS container definitions, EC2 user data, names.

Pure functions of the plan and a few runtime strings (endpoints, ARNs), so tests can check them
against botocore's service models and `bash -n` without Pulumi. The components only call these.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ..endpoints import (APP_PASSWORD_ENV, APP_USERNAME_ENV, AUTH_DIR_ENV, AUTH_ENV, AUTH_SECRET_ARN_ENV, AUTH_SECRET_KEYS,
                         DATABASE_NAME, MASTER_SECRET_ARN_ENV)
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


def database_environment(rt: Runtime, reads_from_replica: bool) -> dict[str, str]:
    env = {"DB_HOST": rt.db_host, "DB_PORT": str(rt.db_port), "DB_NAME": DATABASE_NAME, "DB_SSLMODE": "require"}
    if reads_from_replica and rt.replica_host:
        env["DB_REPLICA_HOST"] = rt.replica_host
    return env


def server_environment(tier: TierPlan, rt: Runtime) -> dict[str, str]:
    """The server's plain environment on ECS and EC2 alike: the plan's, the database, the placeholders."""
    return {**tier.server.environment, **database_environment(rt, tier.reads_from_replica),
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
    env = database_environment(rt, reads_from_replica=False)
    if rt.primary_host:
        env["DB_HOST"] = rt.primary_host
    if AUTH_ENV in tier.server.environment:
        env[AUTH_ENV] = tier.server.environment[AUTH_ENV]
    return env


def _pairs(env: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def _env_file(env: dict[str, str]) -> str:
    """A systemd EnvironmentFile's lines."""
    return "\n".join(f"{k}={v}" for k, v in sorted(env.items()))


def container_definitions(tier: TierPlan, rt: Runtime) -> list[dict]:
    """The task's containers: the migration (`mlflow db upgrade` + index migration) and the server,
    which starts only after the migration exits 0."""
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
        "portMappings": [{"containerPort": server.port, "protocol": "tcp"}],
        "ulimits": [{"name": "nofile", "softLimit": server.nofile, "hardLimit": server.nofile}],
        "healthCheck": {"command": ["CMD-SHELL", health_command(server.port, server.health_path)], "interval": 15, "timeout": 5,
                        "retries": 3, "startPeriod": 90},
        "dependsOn": [{"containerName": "migrate", "condition": "SUCCESS"}],
        "logConfiguration": logs,
    }
    return [migrate, main]


# ---------------------------------------------------------------------------------------------
# EC2: user data with a virtualenv and systemd units carrying the same flags and limits
# ---------------------------------------------------------------------------------------------

def with_server_extra(package_spec: str) -> str:
    """The pip requirement for this package with its `[server]` extra.

    `mlflow-infra==0.1.0` -> `mlflow-infra[server]==0.1.0`; a wheel URL -> the PEP 508 direct
    reference `mlflow-infra[server] @ URL`; a local wheel path -> `path[server]`, as pip spells it.
    """
    spec = package_spec.strip()
    if " @ " in spec:
        name, url = spec.split(" @ ", 1)
        return f"{name.strip()}[server] @ {url.strip()}"
    if "://" in spec:
        return f"mlflow-infra[server] @ {spec}"
    if "/" in spec or spec.endswith((".whl", ".tar.gz")):
        return f"{spec}[server]"
    end = next((i for i, ch in enumerate(spec) if not (ch.isalnum() or ch in "._-")), len(spec))
    if spec[end:].lstrip().startswith("["):
        raise ValueError(f"entrypoint package {package_spec!r}: name it without extras; [server] is added here")
    return f"{spec[:end]}[server]{spec[end:]}"


def user_data(tier: TierPlan, rt: Runtime, package_spec: str, mlflow_version: str, environment: str) -> str:
    """cloud-init shell script for `tracking.compute: ec2` (Amazon Linux 2023, arm64).

    `package_spec` is what pip installs for this project's entrypoint (a wheel URL or
    `mlflow-infra==X`); the server itself runs the pinned MLflow from the same virtualenv.
    """
    server, role = tier.server, tier.role
    # no ECS secret injection on EC2: the entrypoint reads the secrets with the instance role
    env = {**server_environment(tier, rt), "DB_SECRET_ARN": rt.secret_arn, "AWS_DEFAULT_REGION": rt.region}
    # the migrate unit only: the master secret, and the primary itself rather than RDS Proxy
    migrate_env = {}
    if rt.master_secret_arn:
        migrate_env[MASTER_SECRET_ARN_ENV] = rt.master_secret_arn
    if rt.primary_host:
        migrate_env["DB_HOST"] = rt.primary_host
    migrate_env_file = _env_file(migrate_env)
    auth_arn = _auth_secret_arn(tier, rt)
    runtime_dir = ""
    if auth_arn:
        # the auth ini (it holds the database password) goes to a tmpfs directory only the service
        # user can read, which systemd removes when the service stops: restarts leave no copies behind
        env.update({AUTH_SECRET_ARN_ENV: auth_arn, AUTH_DIR_ENV: f"/run/mlflow-{tier.role}"})
        runtime_dir = f"RuntimeDirectory=mlflow-{tier.role}\nRuntimeDirectoryMode=0700\n"
    env_file = _env_file(env)
    command = " ".join(shlex.quote(part) for part in server.command)
    # as the Dockerfile: the planned MLflow pinned, everything else from the package's [server] extra
    packages = " ".join(shlex.quote(p) for p in (
        f"mlflow[auth]=={mlflow_version}", with_server_extra(package_spec)))
    return f"""#!/bin/bash
# MLflow {role} server for {environment}: rendered by mlflow-infra from the capacity plan.
set -euo pipefail
dnf install -y python3.11 python3.11-pip
id mlflow >/dev/null 2>&1 || useradd --system --home-dir /opt/mlflow --shell /sbin/nologin mlflow
python3.11 -m venv /opt/mlflow/venv
/opt/mlflow/venv/bin/pip install --quiet {packages}
install -d -o mlflow -g mlflow -m 0750 /etc/mlflow {shlex.quote(env.get("PROMETHEUS_MULTIPROC_DIR", "/tmp/mlflow-prometheus"))}
cat > /etc/mlflow/{role}.env <<'ENV'
{env_file}
ENV
chmod 0640 /etc/mlflow/{role}.env
cat > /etc/mlflow/migrate.env <<'ENV'
{migrate_env_file}
ENV
chmod 0640 /etc/mlflow/migrate.env

cat > /etc/systemd/system/mlflow-migrate.service <<'UNIT'
[Unit]
Description=MLflow schema upgrade and index migration
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
User=mlflow
EnvironmentFile=/etc/mlflow/{role}.env
# later files win: the master secret's ARN and the primary's address, for this unit only
EnvironmentFile=/etc/mlflow/migrate.env
ExecStart=/opt/mlflow/venv/bin/{ENTRYPOINT} migrate
UNIT

cat > /etc/systemd/system/mlflow-{role}.service <<'UNIT'
[Unit]
Description=MLflow tracking {role} server
After=mlflow-migrate.service
Requires=mlflow-migrate.service

[Service]
User=mlflow
EnvironmentFile=/etc/mlflow/{role}.env
ExecStart=/opt/mlflow/venv/bin/{ENTRYPOINT} server -- /opt/mlflow/venv/bin/{command}
LimitNOFILE={server.nofile}
{runtime_dir}Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT

systemctl daemon-reload
systemctl enable --now mlflow-{role}.service
"""
