"""The IAM policy documents the components share, written once."""

from __future__ import annotations

import json

import pulumi


def assume_role_policy(service: str) -> str:
    """A trust policy letting one AWS service (such as ecs-tasks.amazonaws.com) assume the role."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": service}}]})


def secret_read_policy(secret_arns: pulumi.Input[str] | list[pulumi.Input[str]],
                       kms_key_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """Read these Secrets Manager secrets (one ARN, or a list) and decrypt them with their KMS key,
    nothing else."""
    arns = secret_arns if isinstance(secret_arns, list) else [secret_arns]
    return pulumi.Output.all(kms_key_arn, *arns).apply(lambda v: json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": v[1] if len(v) == 2 else list(v[1:])},
            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": v[0]}]}))


def alarm_topic_key_policy(account_id: str, partition: str = "aws") -> str:
    """The key policy of the alarm topic's key: the account administers it (as a default key policy
    does), and CloudWatch may use it to publish alarm notifications to the encrypted topic. An AWS
    managed key (alias/aws/sns) cannot grant that, so its alarms would never be delivered (SNS
    Developer Guide, "Enable compatibility between event sources from AWS services and encrypted topics")."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudWatchPublishesAlarms", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"},
    ]})


def pre_upgrade_snapshot_policy(instance_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """The migrate step's snapshot of the primary (an instance ARN, or an Aurora cluster's) before a
    schema upgrade: create a manual snapshot of this instance (or cluster) only, named after it
    (`INSTANCE-mlflow-...`), tag it (the instance copies its tags to snapshots) and watch it become
    available. RDS authorizes CreateDBSnapshot (CreateDBClusterSnapshot) on both the source and the
    snapshot ARN (RDS User Guide, "Actions, resources, and condition keys for Amazon RDS")."""
    def document(arn: str) -> str:
        if ":cluster:" in arn:  # Aurora: the cluster's snapshot (CreateDBClusterSnapshot on cluster and cluster-snapshot)
            snapshots, create, describe = f"{arn.replace(':cluster:', ':cluster-snapshot:', 1)}-mlflow-*", \
                "rds:CreateDBClusterSnapshot", "rds:DescribeDBClusterSnapshots"
        else:
            snapshots, create, describe = f"{arn.replace(':db:', ':snapshot:', 1)}-mlflow-*", "rds:CreateDBSnapshot", \
                "rds:DescribeDBSnapshots"
        return json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": create, "Resource": [arn, snapshots]},
            {"Effect": "Allow", "Action": [describe, "rds:AddTagsToResource"], "Resource": snapshots}]})

    return pulumi.Output.from_input(instance_arn).apply(document)
