"""The Pulumi program: `pulumi up` on stack <env> provisions what `mlflow-infra plan <env>` shows.

It loads stacks/<env>.yaml, validates it (a bad file stops the update with one line per problem,
before any resource is declared), plans it and builds MlflowTracking from the plan.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from infra import MlflowTracking, MlflowTrackingArgs

STACKS_DIR = Path(__file__).resolve().parent


def main() -> None:
    stack = pulumi.get_stack()
    args = MlflowTrackingArgs.from_file(STACKS_DIR / f"{stack}.yaml")
    configured = pulumi.Config("aws").get("region")
    if configured and configured != args.spec.region:
        raise pulumi.RunError(f"Pulumi.{stack}.yaml: aws:region: {configured!r} is not allowed; expected"
                              f" {args.spec.region!r}, the region of stacks/{stack}.yaml")
    tracking = MlflowTracking(f"mlflow-{stack}", args)
    pulumi.export("tracking_uri", tracking.tracking_uri)
    pulumi.export("ui_url", tracking.ui_url)
    pulumi.export("primary_endpoint", tracking.primary_endpoint)
    pulumi.export("replica_endpoints", tracking.replica_endpoints)
    pulumi.export("client_security_group_id", tracking.client_security_group_id)
    pulumi.export("artifact_bucket", tracking.artifact_bucket)
    pulumi.export("image_repository", tracking.image_repository)
    pulumi.export("plan_summary", tracking.plan_summary)
    pulumi.export("client_environment", tracking.client_environment)
    pulumi.export("monthly_cost_usd", tracking.monthly_cost_usd)


main()
