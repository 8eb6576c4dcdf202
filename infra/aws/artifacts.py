"""The artifact bucket: private, versioned, encrypted, expiring with the environment's retention.
MLflow proxies artifacts (`--serve-artifacts`), so only the servers' task roles reach it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from .iam import assume_role_policy
from .keys import in_region, kms_key


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
    replica_region: str | None = None
    """A second region S3 replicates every artifact to (disaster recovery); None: no replica."""
    tags: dict[str, str] = field(default_factory=dict)


class ArtifactStore(pulumi.ComponentResource):
    """Outputs: `bucket`, `destination` (MLflow's --artifacts-destination); with `replica_region`,
    `replica_bucket` in that region, which S3 keeps a copy of every object (and delete marker) in."""

    def __init__(self, name: str, args: ArtifactsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-infra:artifacts:ArtifactStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket, versioning = private_bucket(name, args, args.bucket_name, None, child)
        self.destination = self.bucket.bucket.apply(lambda b: f"s3://{b}/artifacts")
        self.replica_bucket = None
        if args.replica_region:
            self._replicate(name, args, versioning, child)
        self.register_outputs({"bucket": self.bucket.bucket, "destination": self.destination,
                               **({"replica_bucket": self.replica_bucket.bucket} if self.replica_bucket else {})})

    def _replicate(self, name: str, args: ArtifactsArgs, versioning: aws.s3.BucketVersioning, child: pulumi.ResourceOptions) -> None:
        """A versioned, encrypted bucket in the second region and S3 replication of every object and
        delete marker to it: S3 requires versioning on both buckets, and for SSE-KMS objects a
        customer managed key in the destination region (docs/aws-constraints.md)."""
        there = in_region(self, f"{name}-replica-region", args.replica_region)
        self.replica_key = kms_key(f"{name}-replica-key", f"{name}: artifact replicas in {args.replica_region}", args.tags, there)
        self.replica_bucket, replica_versioning = private_bucket(f"{name}-replica", args, None, self.replica_key.arn, there)
        role = aws.iam.Role(f"{name}-replication", assume_role_policy=assume_role_policy("s3.amazonaws.com"),
                            tags=args.tags, opts=child)
        aws.iam.RolePolicy(f"{name}-replication", role=role.id, opts=child, policy=pulumi.Output.all(
            self.bucket.arn, self.replica_bucket.arn, self.replica_key.arn).apply(lambda v: replication_policy(*v)))
        aws.s3.BucketReplicationConfig(
            f"{name}-replication", bucket=self.bucket.id, role=role.arn,
            rules=[{"id": "second-region", "status": "Enabled", "priority": 1, "filter": {},
                    "delete_marker_replication": {"status": "Enabled"},
                    "source_selection_criteria": {"sse_kms_encrypted_objects": {"status": "Enabled"}},
                    "destination": {"bucket": self.replica_bucket.arn, "storage_class": "STANDARD",
                                    "encryption_configuration": {"replica_kms_key_id": self.replica_key.arn}}}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning, replica_versioning]))


def private_bucket(name: str, args: ArtifactsArgs, bucket_name: str | None, kms_key_id: pulumi.Input[str] | None,
                   opts: pulumi.ResourceOptions) -> tuple[aws.s3.Bucket, aws.s3.BucketVersioning]:
    """A bucket with public access blocked, owner-enforced objects, versioning, SSE-KMS (the account's
    aws/s3 key, or `kms_key_id`), the retention's lifecycle and a TLS-only policy."""
    bucket = aws.s3.Bucket(f"{name}-bucket", bucket=bucket_name, force_destroy=args.force_destroy, tags=args.tags, opts=opts)
    aws.s3.BucketPublicAccessBlock(f"{name}-public-access", bucket=bucket.id, block_public_acls=True,
                                   block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True, opts=opts)
    aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=opts)
    versioning = aws.s3.BucketVersioning(f"{name}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"},
                                         opts=opts)
    default = {"sse_algorithm": "aws:kms", **({"kms_master_key_id": kms_key_id} if kms_key_id is not None else {})}
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption", bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": default, "bucket_key_enabled": True}], opts=opts)
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-lifecycle", bucket=bucket.id,
        rules=[{
            "id": "retention", "status": "Enabled", "filter": {"prefix": ""},
            "expiration": {"days": args.expire_after_days},
            "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_expire_days},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
        }],
        opts=opts)
    aws.s3.BucketPolicy(
        f"{name}-tls-only", bucket=bucket.id,
        policy=bucket.arn.apply(lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})),
        opts=opts)
    return bucket, versioning


def replication_policy(source_arn: str, replica_arn: str, replica_key_arn: str) -> str:
    """What S3 replication's role needs (S3 User Guide, "Setting up permissions for live replication"):
    read the source's configuration and object versions, replicate into the replica, decrypt with the
    source's aws/s3 key (through S3) and encrypt with the replica's key."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"], "Resource": source_arn},
        {"Effect": "Allow", "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl",
                                       "s3:GetObjectVersionTagging"], "Resource": f"{source_arn}/*"},
        {"Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"], "Resource": f"{replica_arn}/*"},
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}},
        {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:GenerateDataKey"], "Resource": replica_key_arn}]})


def bucket_policy(bucket_arn: str, write: bool) -> str:
    """The task role's access: the artifact bucket only; the UI reads, the API also writes."""
    actions = ["s3:GetObject", "s3:ListBucket", *(["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"] if write else [])]
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": actions, "Resource": [bucket_arn, f"{bucket_arn}/*"]}]})
