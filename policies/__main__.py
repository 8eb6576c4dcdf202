"""The CrossGuard pack: `pulumi preview --policy-pack policies --policy-pack-config policies/config/<env>.json`.

The rules are plain functions in infra/policy/rules.py; `mlflow-infra policy check ENV` runs the
same ones offline. This file only constructs the pack.
"""

from pulumi_policy import PolicyPack

from infra.policy.pack import policies

PolicyPack(name="mlflow-tracking", policies=policies())
