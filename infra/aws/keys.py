"""KMS keys and the second region: every customer managed key of the stack has one shape (rotated
every year, 30 days before a deletion takes effect), and what a component declares in the
disaster-recovery region goes through a provider of that region (a key is usable only in its own)."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws


def kms_key(name: str, description: pulumi.Input[str], tags: dict[str, str], opts: pulumi.ResourceOptions,
            policy: pulumi.Input[str] | None = None) -> aws.kms.Key:
    return aws.kms.Key(name, description=description, enable_key_rotation=True, deletion_window_in_days=30, policy=policy,
                       tags=tags, opts=opts)


def in_region(parent: pulumi.Resource, name: str, region: str) -> pulumi.ResourceOptions:
    """Options placing a child of `parent` in `region`: a provider `name` for it, parented like the rest."""
    provider = aws.Provider(name, region=region, opts=pulumi.ResourceOptions(parent=parent))
    return pulumi.ResourceOptions(parent=parent, provider=provider)
