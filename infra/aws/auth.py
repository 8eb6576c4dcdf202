"""The basic-auth secret (`tracking.auth: basic`): MLflow's Flask secret key and the admin user's
name and password, in one Secrets Manager secret encrypted with the database's KMS key.

ECS injects its JSON keys into every server container (`rendering.auth_secrets`); on EC2 the
entrypoint reads it through AUTH_SECRET_ARN. The values are generated here, once: the secret
version ignores later changes to its string, so every `pulumi up` keeps what the first one stored
(the admin user is created from it once and MLflow ignores the password afterwards).
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from ..endpoints import new_auth_secret


def auth_secret(name: str, kms_key_arn: pulumi.Input[str], tags: dict[str, str],
                opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
    """The secret and its first version; the secret's ARN, resolved once the version exists (ECS
    reads the value when a task starts, so a task definition must not come first).

    Generated in the program with Python's `secrets` (CSPRNG): no provider to add (pulumi_random
    is not a dependency) and no API call at preview, which `aws.secretsmanager.get_random_password`
    would make (and it returns a new value on every run, as this does: hence ignore_changes)."""
    secret = aws.secretsmanager.Secret(
        name, description="MLflow basic-auth: Flask secret key and admin user (JSON secret_key, admin_username, admin_password)",
        kms_key_id=kms_key_arn, tags=tags, opts=opts)
    version = aws.secretsmanager.SecretVersion(
        name, secret_id=secret.id, secret_string=pulumi.Output.secret(json.dumps(new_auth_secret())),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["secretString"])))
    return pulumi.Output.all(secret.arn, version.id).apply(lambda v: v[0])
