"""Another team's Pulumi program composing the component, as the README shows."""

import pulumi
import pulumi_aws as aws

from infra import MlflowTracking, MlflowTrackingArgs

tracking = MlflowTracking("research", MlflowTrackingArgs.from_file("stacks/staging.yaml"))

# the team's training fleet joins the client security group the platform exports
training_nodes = aws.ec2.LaunchTemplate(
    "training-nodes",
    instance_type="g5.xlarge",
    vpc_security_group_ids=[tracking.client_security_group_id],
    metadata_options={"http_tokens": "required"},
)
pulumi.export("MLFLOW_TRACKING_URI", tracking.tracking_uri)
