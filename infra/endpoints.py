"""Names and ports every stage shares, defined once: the planner, the components, the container
entrypoint, the local topology and the policy rules all import them from here. Facts of the
deployment, not planning decisions: nothing here depends on the workload."""

TRACKING_PORT = 5000           # what the MLflow servers listen on, behind the load balancers
HEALTH_PATH = "/health"        # MLflow's health endpoint, exempt from its host check
DATABASE_PORT = 5432           # PostgreSQL's (and RDS's) default
DATABASE_NAME = "mlflow"       # the tracking database on the primary
DATABASE_USERNAME = "mlflow"   # the RDS master user the servers log in as
