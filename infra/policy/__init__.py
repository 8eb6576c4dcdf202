"""The policy rules (plain functions), the offline checker and the per-environment policy config."""
