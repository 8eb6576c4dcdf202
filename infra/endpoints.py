"""Names and ports every stage shares, defined once: the planner, the components, the container
entrypoint, the local topology and the policy rules all import them from here. Facts of the
deployment, not planning decisions: nothing here depends on the workload. Also the one generator of
each credential (database passwords, the basic-auth values), so AWS and this machine make them alike."""

TRACKING_PORT = 5000           # what the MLflow servers listen on, behind the load balancers
HEALTH_PATH = "/health"        # MLflow's health endpoint, exempt from its host check
# A UI server that reads a replica: the entrypoint answers its load balancer's health check here,
# 200 only while MLflow answers /health and the replica (as MLflow connects to it) answers a query
READY_PORT = 5001
READY_PATH = "/ready"
READY_PORT_ENV = "MLFLOW_INFRA_READY_PORT"
READY_HOST_ENV = "MLFLOW_INFRA_READY_HOST"   # where the readiness port listens (default 0.0.0.0; locally 127.0.0.1)
# with a single replica: where its UI reads go while the replica cannot be reached (the primary's endpoint)
READ_FALLBACK_HOST_ENV = "DB_READ_FALLBACK_HOST"
# Tags: every resource carries the environment in ENVIRONMENT_TAG (an `environment` tag alone is
# shared with every other system's); each one an alarm points at carries its alarm target's name in
# TARGET_TAG (`primary`, `replica-0`, `api-lb`, `ui-tg`, `ui-2-fleet`, ...), and the master user's
# secret MASTER_SECRET_TARGET: `mlflow-infra doctor` and `db apply-pending` find them by these
ENVIRONMENT_TAG = "mlflow-infra:environment"
# The load balancers close a connection idle this long: a large search or artifact listing may take
# a while, and a client's request timeout need not be longer
LOAD_BALANCER_IDLE_TIMEOUT_S = 120
TARGET_TAG = "mlflow-infra:target"
MASTER_SECRET_TARGET = "master-secret"
# a server starts only against the schema its MLflow expects: it waits this long for its deploy's
# migrate step while the database is behind (unset: no check, MLflow's own behaviour)
SCHEMA_WAIT_ENV = "MLFLOW_INFRA_SCHEMA_WAIT_S"
# migrate only: the primary's RDS instance identifier, snapshotted before a schema upgrade
DB_INSTANCE_ENV = "DB_INSTANCE_ID"
DB_CLUSTER_ENV = "DB_CLUSTER_ID"   # Aurora: the migrate step snapshots the cluster before an upgrade
# EC2: the container's ECS `secrets` (names and valueFrom references, never values) as JSON; the
# entrypoint reads them with the instance role and sets the variables, as ECS would
SECRETS_ENV = "MLFLOW_INFRA_SECRETS"
DATABASE_PORT = 5432           # PostgreSQL's (and RDS's) default
DATABASE_NAME = "mlflow"       # the tracking database on the primary
DATABASE_USERNAME = "mlflow"   # the RDS master user: only `mlflow-infra-entrypoint migrate` logs in as it
# the application role the servers log in as: created (or its password reset) by the migrate step,
# owner of MLflow's tables in the `mlflow` database's public schema, never rds_superuser
APP_DATABASE_USERNAME = "mlflow_app"
# migrate only: the master secret's ARN on EC2 (ECS injects its keys as DB_USERNAME/DB_PASSWORD instead)
MASTER_SECRET_ARN_ENV = "DB_MASTER_SECRET_ARN"
# migrate only: the application role to create or update (ECS injects them from the app secret; on
# EC2, with DB_MASTER_SECRET_ARN set, they are read from DB_SECRET_ARN, the servers' own secret)
APP_USERNAME_ENV = "APP_DB_USERNAME"
APP_PASSWORD_ENV = "APP_DB_PASSWORD"
# RDS MasterUserPassword (PostgreSQL): 8-128 printable ASCII characters except '/', '"', '@' and space
# (RDS API Reference, CreateDBInstance). The app role's password follows the same rule, so either
# secret's value can be used anywhere the other can.
DATABASE_PASSWORD_EXCLUDED = '/"@ '
DATABASE_PASSWORD_LENGTH = 40

# `tracking.auth: basic`: what MLflow's basic-auth app needs at start (MLflow 3.17.2). A static
# Flask secret key, read only from MLFLOW_FLASK_SERVER_SECRET_KEY (mlflow/server/auth/__init__.py:8887-8904,
# shared by every server so CSRF tokens validate across them); an admin user and password, which
# bootstrap creates once in an empty user store and ignores afterwards (__init__.py:7110-7142,
# basic_auth.ini:4-9). The entrypoint writes the admin pair and the user store's database_uri into
# the auth ini it points MLFLOW_AUTH_CONFIG_PATH at (mlflow/server/auth/config.py:31-76). All three
# come from one Secrets Manager secret, by these JSON keys: ECS injects them, EC2 reads AUTH_SECRET_ARN.
AUTH_SECRET_KEYS = {"MLFLOW_FLASK_SERVER_SECRET_KEY": "secret_key",
                    "AUTH_ADMIN_USERNAME": "admin_username",
                    "AUTH_ADMIN_PASSWORD": "admin_password"}
AUTH_SECRET_ENV = tuple(AUTH_SECRET_KEYS)
AUTH_ADMIN_USERNAME = "admin"
AUTH_SECRET_ARN_ENV = "AUTH_SECRET_ARN"
# plain: tells `mlflow-infra-entrypoint migrate` to create or upgrade the basic-auth user store on
# the primary, under the migration's advisory lock, before any server bootstraps it
AUTH_ENV = "MLFLOW_INFRA_AUTH"
# where the entrypoint makes the private directory for the auth ini (default: the system temp dir)
AUTH_DIR_ENV = "MLFLOW_INFRA_AUTH_DIR"
AUTH_APP = "basic-auth"


def auth_variables(secret: dict[str, str]) -> dict[str, str]:
    """The entrypoint's basic-auth variables from the auth secret's JSON (what ECS injects by key)."""
    return {name: secret[key] for name, key in AUTH_SECRET_KEYS.items()}


def new_auth_secret(username: str = AUTH_ADMIN_USERNAME) -> dict[str, str]:
    """Fresh basic-auth values by the secret's JSON keys: a 256-bit Flask secret key and a
    32-character admin password (MLflow wants 12 or more). One generator for AWS and this machine."""
    import secrets

    return {AUTH_SECRET_KEYS["MLFLOW_FLASK_SERVER_SECRET_KEY"]: secrets.token_hex(32),
            AUTH_SECRET_KEYS["AUTH_ADMIN_USERNAME"]: username,
            AUTH_SECRET_KEYS["AUTH_ADMIN_PASSWORD"]: secrets.token_urlsafe(24)}


def new_database_password(length: int = DATABASE_PASSWORD_LENGTH) -> str:
    """A database password from Python's `secrets` (CSPRNG), in the characters RDS allows for a master
    password: printable ASCII (33-126) without '/', '"' and '@' (space, 32, is outside the range)."""
    import secrets

    if not 8 <= length <= 128:
        raise ValueError(f"database password length {length} is not allowed; expected 8 to 128 (RDS MasterUserPassword)")
    alphabet = [chr(c) for c in range(33, 127) if chr(c) not in DATABASE_PASSWORD_EXCLUDED]
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_database_secret(username: str, password: str | None = None) -> dict[str, str]:
    """A database secret's JSON, in RDS's own format (username, password) plus engine and dbname."""
    return {"username": username, "password": password or new_database_password(), "engine": "postgres",
            "dbname": DATABASE_NAME}
