"""Adapters from the plain rules to CrossGuard policies; policies/__main__.py builds the pack from these."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from .rules import CONFIG_SCHEMA, RULES, PolicyConfig, Res, Rule


def _config(args) -> PolicyConfig:
    return PolicyConfig.from_dict(dict(args.get_config() or {}))


def _resource_validation(rule: Rule):
    def validate(args, report_violation):
        config = _config(args)
        if args.resource_type not in rule.resource_types or (rule.production_only and not config.production):
            return
        for message in rule.check(Res(args.resource_type, args.name, dict(args.props), args.urn), config):
            report_violation(f"{message}. Fix: {rule.remediation}")
    return validate


def _stack_validation(rule: Rule):
    def validate(args, report_violation):
        config = _config(args)
        if rule.production_only and not config.production:
            return
        resources = [Res(r.resource_type, r.name, dict(r.props), r.urn) for r in args.resources]
        for resource, message in rule.check(resources, config):
            report_violation(f"{message}. Fix: {rule.remediation}", resource.urn or None)
    return validate


def policies() -> list:
    built = []
    for rule in RULES:
        common = dict(
            name=rule.name,
            description=f"{rule.description}: {rule.reason}",
            enforcement_level=EnforcementLevel.MANDATORY if rule.mandatory else EnforcementLevel.ADVISORY,
            config_schema=PolicyConfigSchema(properties=CONFIG_SCHEMA),
            remediation_steps=rule.remediation,
        )
        if rule.stack:
            built.append(StackValidationPolicy(validate=_stack_validation(rule), **common))
        else:
            built.append(ResourceValidationPolicy(validate=_resource_validation(rule), **common))
    return built
