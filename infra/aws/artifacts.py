"""The artifact bucket: private, versioned, encrypted, expiring with the environment's retention.
MLflow proxies artifacts (`--serve-artifacts`), so only the servers' task roles reach it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws


@dataclass
class ArtifactsArgs:
    expire_after_days: int
    """Artifacts expire with their runs (the plan uses the runs' retention)."""
    noncurrent_version_expire_days: int = 30
    """Overwritten or deleted versions are kept this long (recoverable after a mistake)."""
    bucket_name: str | None = None
    """None lets Pulumi name the bucket (globally unique)."""
    force_destroy: bool = False
    """Delete a bucket that still holds objects on `pulumi destroy` (never in production)."""
    tags: dict[str, str] = field(default_factory=dict)


class ArtifactStore(pulumi.ComponentResource):
    def __init__(self, name: str, args: ArtifactsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-infra:artifacts:ArtifactStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(f"{name}-bucket", bucket=args.bucket_name, force_destroy=args.force_destroy,
                                    tags=args.tags, opts=child)
        aws.s3.BucketPublicAccessBlock(f"{name}-public-access", bucket=self.bucket.id, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
                                       opts=child)
        aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=self.bucket.id,
                                       rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        aws.s3.BucketVersioning(f"{name}-versioning", bucket=self.bucket.id,
                                versioning_configuration={"status": "Enabled"}, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}, "bucket_key_enabled": True}],
            opts=child)
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=self.bucket.id,
            rules=[{
                "id": "retention", "status": "Enabled", "filter": {"prefix": ""},
                "expiration": {"days": args.expire_after_days},
                "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_expire_days},
                "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
            }],
            opts=child)
        aws.s3.BucketPolicy(
            f"{name}-tls-only", bucket=self.bucket.id,
            policy=self.bucket.arn.apply(lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [{
                "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})),
            opts=child)
        self.destination = self.bucket.bucket.apply(lambda b: f"s3://{b}/artifacts")
        self.register_outputs({"bucket": self.bucket.bucket, "destination": self.destination})


def bucket_policy(bucket_arn: str, write: bool) -> str:
    """The task role's access: the artifact bucket only; the UI reads, the API also writes."""
    actions = ["s3:GetObject", "s3:ListBucket", *(["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"] if write else [])]
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": actions, "Resource": [bucket_arn, f"{bucket_arn}/*"]}]})
