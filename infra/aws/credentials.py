"""The database's two credentials, owned by the stack (not RDS-managed): the master user's and the
application role's, each in its own Secrets Manager secret encrypted with the database's KMS key.

RDS cannot create a read replica of an instance that manages its master password in Secrets Manager
(RDS User Guide, "Limitations for Secrets Manager integration with Amazon RDS"), and it would rotate
that secret every 7 days behind the backs of tasks that read it once at start. So the program
generates both passwords once with Python's `secrets` (as `auth.py` does for basic-auth), stores them
as Pulumi secrets in a `SecretVersion` that ignores later changes to its string, and the primary's
`password` is read back from that version's stored value: every later `pulumi up` generates a new
candidate, the engine keeps the stored one (ignore_changes), and the instance sees the stored one.

- master (`username` mlflow): the instance's master password; read only by the migrate step.
- app (`username` mlflow_app): the servers' role, created and kept in step by the migrate step
  (`ALTER ROLE ... PASSWORD` to the secret's current value: see README "Rotating database passwords");
  RDS Proxy authenticates it.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from ..endpoints import new_database_secret


class DatabaseSecret:
    """A generated JSON secret (username, password, engine, dbname) and its first version.

    `arn` resolves once the version exists (ECS reads the value when a task starts, so a task
    definition must not come first); `password` is the stored version's password, a Pulumi secret."""

    def __init__(self, name: str, username: str, description: str, kms_key_arn: pulumi.Input[str],
                 tags: dict[str, str], opts: pulumi.ResourceOptions):
        self.secret = aws.secretsmanager.Secret(name, description=description, kms_key_id=kms_key_arn, tags=tags, opts=opts)
        self.version = aws.secretsmanager.SecretVersion(
            name, secret_id=self.secret.id, secret_string=pulumi.Output.secret(json.dumps(new_database_secret(username))),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["secretString"])))
        self.arn: pulumi.Output[str] = pulumi.Output.all(self.secret.arn, self.version.id).apply(lambda v: v[0])
        # from the version's state, not from the string generated in this run: stable across runs
        self.password: pulumi.Output[str] = pulumi.Output.secret(
            self.version.secret_string.apply(lambda text: json.loads(text)["password"]))
