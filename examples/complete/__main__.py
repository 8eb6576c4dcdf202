"""The full platform from an environment file: `MlflowTracking` plans environment.yaml (next to this
file) and builds every child from the plan: VPC, database with replicas and tuned parameter groups,
artifact bucket, API and UI server fleets behind their load balancers, alarms.

Config: `environmentFile` (optional; a path relative to this folder, default environment.yaml) and
`aws:region`, which must match the file's `region`.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from infra import MlflowTracking, MlflowTrackingArgs

HERE = Path(__file__).resolve().parent

config = pulumi.Config()
environment_file = HERE / (config.get("environmentFile") or "environment.yaml")
# a bad file stops here, before any resource is declared, with one line per problem
args = MlflowTrackingArgs.from_file(environment_file)

region = pulumi.Config("aws").get("region")
if region and region != args.spec.region:
    raise pulumi.RunError(f"aws:region: {region!r} is not allowed; expected {args.spec.region!r},"
                          f" the region of {environment_file.name}")

tracking = MlflowTracking("mlflow", args)

pulumi.export("tracking_uri", tracking.tracking_uri)                          # MLFLOW_TRACKING_URI for training jobs
pulumi.export("ui_url", tracking.ui_url)
pulumi.export("primary_endpoint", tracking.primary_endpoint)
pulumi.export("replica_endpoints", tracking.replica_endpoints)
pulumi.export("client_security_group_id", tracking.client_security_group_id)  # attach to training compute
pulumi.export("artifact_bucket", tracking.artifact_bucket)
pulumi.export("image_repository", tracking.image_repository)
pulumi.export("plan_summary", tracking.plan_summary)
pulumi.export("monthly_cost_usd", tracking.monthly_cost_usd)
