"""Predicates shared by input validation (infra/spec.py), the plan and the policy rules, so the
environment file and the deployed resources are held to the same line."""

from __future__ import annotations


def burstable_class(instance_class: str) -> bool:
    """T-family classes run on CPU credits: fine for development, not for sustained logging."""
    return instance_class.startswith("db.t")


def synchronous_commit_off_allowed(production: bool, durability: str) -> bool:
    """Only an explicitly relaxed, non-production environment may trade the last writes for speed."""
    return durability == "relaxed" and not production
