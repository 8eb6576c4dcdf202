"""Alarms on the symptoms of the README's bottleneck table (CPU, memory, connections against the
budget, storage, I/O queue, replica lag, 5xx and latency, server CPU) and one dashboard. Every
alarm comes from the plan's alarm list (infra/planning/alarms.py); this component only declares them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from ..planning.alarms import AlarmPlan
from .iam import alarm_topic_key_policy
from .keys import kms_key


@dataclass
class MonitoringArgs:
    alarms: list[AlarmPlan]
    """What to alarm on (`plan.alarms`, or your own `AlarmPlan`s)."""
    dimensions: dict[str, dict[str, pulumi.Input[str]]]
    """Each alarm's `target` (primary, replica-<i>, api-lb, ui-lb, api-fleet, ui-fleet) -> its CloudWatch dimensions."""
    region: str
    email: list[str] = field(default_factory=list)
    """Addresses subscribed to the alarm topic (each confirms by e-mail)."""
    dashboard: bool = True
    tags: dict[str, str] = field(default_factory=dict)


def target_dimensions(primary: pulumi.Input[str], replicas: list[pulumi.Input[str]], load_balancers: dict[str, pulumi.Input[str]],
                      fleets: dict[str, dict[str, pulumi.Input[str]]],
                      target_groups: dict[str, pulumi.Input[str]] | None = None,
                      cluster: pulumi.Input[str] | None = None) -> dict[str, dict[str, pulumi.Input[str]]]:
    """The dimensions of every alarm target, from the resources' identifiers (`fleets` by service:
    api, ui, ui-2, ...; `target_groups` by role, their ARN suffixes; `cluster`: an Aurora cluster's
    identifier, `primary` then being its writer instance)."""
    found: dict[str, dict[str, pulumi.Input[str]]] = {"primary": {"DBInstanceIdentifier": primary}}
    if cluster is not None:
        found["cluster"] = {"DBClusterIdentifier": cluster}
    found.update({f"replica-{i}": {"DBInstanceIdentifier": r} for i, r in enumerate(replicas)})
    found.update({f"{role}-lb": {"LoadBalancer": suffix} for role, suffix in load_balancers.items()})
    found.update({f"{role}-tg": {"TargetGroup": suffix, "LoadBalancer": load_balancers[role]}
                  for role, suffix in (target_groups or {}).items()})
    found.update({f"{role}-fleet": dims for role, dims in fleets.items()})
    return found


class TrackingMonitoring(pulumi.ComponentResource):
    """Outputs: `topic_arn` (subscribe more endpoints to it), `alarms` (by key)."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-infra:monitoring:TrackingMonitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        missing = sorted({a.target for a in args.alarms}.difference(args.dimensions))
        if missing:
            raise ValueError(f"MonitoringArgs.dimensions: no dimensions for alarm targets {', '.join(missing)}")
        identity, partition = aws.get_caller_identity_output(), aws.get_partition_output()
        # a customer managed key: CloudWatch must be allowed to use it, which alias/aws/sns cannot allow
        self.key = kms_key(
            f"{name}-alarms-key", f"{name}: the alarm topic", args.tags, child,
            policy=pulumi.Output.all(identity.account_id, partition.partition).apply(lambda v: alarm_topic_key_policy(v[0], v[1])))
        self.topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=self.key.arn, tags=args.tags, opts=child)
        for i, email in enumerate(args.email):
            aws.sns.TopicSubscription(f"{name}-email-{i}", topic=self.topic.arn, protocol="email", endpoint=email, opts=child)
        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}
        for alarm in args.alarms:
            self.alarms[alarm.key] = aws.cloudwatch.MetricAlarm(
                f"{name}-{alarm.key}", namespace=alarm.namespace, metric_name=alarm.metric,
                dimensions=args.dimensions[alarm.target], comparison_operator=alarm.comparison,
                threshold=alarm.threshold, statistic=alarm.statistic, extended_statistic=alarm.extended_statistic,
                period=alarm.period_seconds, evaluation_periods=alarm.evaluation_periods,
                datapoints_to_alarm=alarm.datapoints_to_alarm, treat_missing_data=alarm.treat_missing_data,
                alarm_description=alarm.reason, alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn],
                tags=args.tags, opts=child)
        self.dashboard = None
        if args.dashboard and {"primary", "api-lb", "ui-lb"} <= set(args.dimensions):
            d = args.dimensions
            self.dashboard = aws.cloudwatch.Dashboard(
                f"{name}-dashboard", dashboard_name=f"{name}-mlflow",
                dashboard_body=pulumi.Output.all(d["primary"]["DBInstanceIdentifier"], d["api-lb"]["LoadBalancer"],
                                                 d["ui-lb"]["LoadBalancer"]).apply(
                    lambda v: json.dumps(dashboard_body(v[0], v[1], v[2], args.region))),
                opts=child)
        self.topic_arn = self.topic.arn
        self.register_outputs({"topic_arn": self.topic.arn})


def dashboard_body(db: str, api_lb: str, ui_lb: str, region: str) -> dict:
    def widget(title, metrics):
        return {"type": "metric", "width": 12, "height": 6,
                "properties": {"title": title, "region": region, "metrics": metrics, "period": 60, "stat": "Average"}}
    return {"widgets": [
        widget("Database CPU and connections", [["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier", db],
                                                ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", db, {"yAxis": "right"}]]),
        widget("Database I/O", [["AWS/RDS", "WriteIOPS", "DBInstanceIdentifier", db], ["AWS/RDS", "DiskQueueDepth", "DBInstanceIdentifier", db]]),
        widget("API requests and p99", [["AWS/ApplicationELB", "RequestCount", "LoadBalancer", api_lb, {"stat": "Sum"}],
                                        ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", api_lb, {"stat": "p99", "yAxis": "right"}]]),
        widget("UI requests and p99", [["AWS/ApplicationELB", "RequestCount", "LoadBalancer", ui_lb, {"stat": "Sum"}],
                                       ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", ui_lb, {"stat": "p99", "yAxis": "right"}]]),
    ]}
