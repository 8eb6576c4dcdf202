"""Adapters from the plain rules to CrossGuard policies; policies/__main__.py builds the pack from these.

Unknown values. pulumi_policy hands a policy its props wrapped by `unknown_checking_proxy`
(pulumi_policy/policy.py, `Analyze` and `AnalyzeStack`): reading a value the engine marked unknown
(a typed sentinel string, `UNKNOWN_*_VALUE` in pulumi_policy/proxy.py) raises `UnknownValueError`, and
the servicer turns that exception into an ADVISORY "can't run policy ... during preview" diagnostic
instead of a violation. So `dict(args.props)` alone used to skip a whole rule (for a stack rule: on every
resource) as soon as one input anywhere was unknown. `_plain` unwraps the proxies without reading
through them and replaces each sentinel with `rules.UNKNOWN`; `run_resource_rule` / `run_stack_rule`
then report what a rule cannot verify as a violation at the rule's own level (see rules.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationPolicy,
    StackValidationPolicy,
)
from pulumi_policy import proxy as _proxy

from .rules import CONFIG_SCHEMA, RULES, UNKNOWN, UNVERIFIABLE, PolicyConfig, Res, Rule, run_resource_rule, run_stack_rule

# pulumi_policy's markers of a value unknown during preview, one per type it can have
UNKNOWN_SENTINELS = frozenset({
    _proxy.UNKNOWN_BOOLEAN_VALUE, _proxy.UNKNOWN_NUMBER_VALUE, _proxy.UNKNOWN_STRING_VALUE, _proxy.UNKNOWN_ARRAY_VALUE,
    _proxy.UNKNOWN_ASSET_VALUE, _proxy.UNKNOWN_ARCHIVE_VALUE, _proxy.UNKNOWN_OBJECT_VALUE,
})
_PROXIES = (_proxy._DictProxy, _proxy._ListProxy)


def _plain(value: Any) -> Any:
    """pulumi_policy's props as plain dicts and lists, with `UNKNOWN` for each unknown sentinel.

    A proxy is unwrapped through its `__target` key (as pulumi_policy's own `serialize_properties`
    does), never by reading its items, which would raise `UnknownValueError` on an unknown one."""
    if isinstance(value, _PROXIES):
        value = value["__target"]
    if isinstance(value, str):
        return UNKNOWN if value in UNKNOWN_SENTINELS else value
    if isinstance(value, Mapping):
        return {key: _plain(value[key]) for key in value}
    if isinstance(value, Sequence):
        return [_plain(item) for item in value]
    return value


def _deps(resource) -> dict[str, tuple[str, ...]]:
    """A PolicyResource's property dependencies as URNs (the engine sends them to stack policies)."""
    return {key: tuple(d.urn for d in deps or ()) for key, deps in (getattr(resource, "property_dependencies", None) or {}).items()}


def _text(rule: Rule, message: str) -> str:
    if message.startswith(UNVERIFIABLE):
        return f"{message}; {rule.name} fails closed until it is known"
    return f"{message}. Fix: {rule.remediation}"


def _config(args) -> PolicyConfig:
    return PolicyConfig.from_dict(dict(args.get_config() or {}))


def _resource_validation(rule: Rule):
    def validate(args, report_violation):
        config = _config(args)
        if args.resource_type not in rule.resource_types or not rule.applies(config):
            return
        resource = Res(args.resource_type, args.name, _plain(args.props), args.urn)
        for message in run_resource_rule(rule, resource, config):
            report_violation(_text(rule, message))
    return validate


def _stack_validation(rule: Rule):
    def validate(args, report_violation):
        config = _config(args)
        if not rule.applies(config):
            return
        resources = [Res(r.resource_type, r.name, _plain(r.props), r.urn, _deps(r)) for r in args.resources]
        for resource, message in run_stack_rule(rule, resources, config):
            report_violation(_text(rule, message), resource.urn or None)
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
