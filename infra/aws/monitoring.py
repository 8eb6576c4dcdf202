"""Alarms on the symptoms the reference text lists (CPU, memory, connections against the budget,
storage, I/O queue, replica lag, 5xx and latency, server CPU) and one dashboard."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from ..planning.plan import CapacityPlan
from ..spec.model import Alarms

GIB = 1024**3


@dataclass
class MonitoringArgs:
    plan: CapacityPlan
    alarms: Alarms
    primary_identifier: pulumi.Input[str]
    replica_identifiers: list[pulumi.Input[str]]
    api_lb_suffix: pulumi.Input[str]
    ui_lb_suffix: pulumi.Input[str]
    ecs_cluster_name: pulumi.Input[str] | None = None
    ecs_service_names: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    asg_names: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class TrackingMonitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-infra:monitoring:TrackingMonitoring", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self._name, self._tags = name, args.tags
        plan, a = args.plan, args.alarms
        self.topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id="alias/aws/sns", tags=args.tags, opts=self._child)
        for i, email in enumerate(a.email):
            aws.sns.TopicSubscription(f"{name}-email-{i}", topic=self.topic.arn, protocol="email", endpoint=email, opts=self._child)
        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}
        db = {"DBInstanceIdentifier": args.primary_identifier}
        memory = plan.database.instance.memory_gib * GIB
        budget = plan.connection_budget
        self._alarm("db-cpu", "AWS/RDS", "CPUUtilization", db, ">", a.db_cpu_percent, "Average",
                    "database CPU high: undersized class or a missing index (mlflow-infra plan)")
        self._alarm("db-memory", "AWS/RDS", "FreeableMemory", db, "<", memory * a.db_free_memory_percent / 100, "Average",
                    "database memory low: the hot set no longer fits in cache")
        self._alarm("db-connections", "AWS/RDS", "DatabaseConnections", db, ">",
                    budget.max_connections * a.db_connections_percent_of_budget / 100, "Maximum",
                    f"connections near max_connections {budget.max_connections}: pools are outgrowing the budget")
        self._alarm("db-storage", "AWS/RDS", "FreeStorageSpace", db, "<",
                    plan.database.storage.allocated_gib * GIB * a.db_free_storage_percent / 100, "Minimum",
                    "free storage low: autoscaling ceiling near or growth above plan")
        self._alarm("db-disk-queue", "AWS/RDS", "DiskQueueDepth", db, ">", a.disk_queue_depth, "Average",
                    "I/O queueing: gp3 IOPS or throughput below the write load")
        for i, replica in enumerate(args.replica_identifiers):
            self._alarm(f"replica-{i}-lag", "AWS/RDS", "ReplicaLag", {"DBInstanceIdentifier": replica}, ">",
                        a.replica_lag_seconds, "Maximum", "replica lag: the UI shows stale runs")
        for role, suffix in (("api", args.api_lb_suffix), ("ui", args.ui_lb_suffix)):
            self._alarm(f"{role}-5xx", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", {"LoadBalancer": suffix}, ">",
                        a.load_balancer_5xx_per_minute, "Sum", f"{role} servers answer 5xx")
        self._alarm("api-latency-p99", "AWS/ApplicationELB", "TargetResponseTime", {"LoadBalancer": args.api_lb_suffix}, ">",
                    a.api_p99_latency_ms / 1000, None, "API p99 latency: logging calls queue", extended="p99")
        for role, service in args.ecs_service_names.items():
            self._alarm(f"{role}-cpu", "AWS/ECS", "CPUUtilization", {"ClusterName": args.ecs_cluster_name, "ServiceName": service},
                        ">", a.service_cpu_percent, "Average", f"{role} servers CPU high: autoscaling at its maximum?")
        for role, group in args.asg_names.items():
            self._alarm(f"{role}-cpu", "AWS/EC2", "CPUUtilization", {"AutoScalingGroupName": group},
                        ">", a.service_cpu_percent, "Average", f"{role} servers CPU high: autoscaling at its maximum?")
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=f"{name}-mlflow",
            dashboard_body=pulumi.Output.all(args.primary_identifier, args.api_lb_suffix, args.ui_lb_suffix).apply(
                lambda v: json.dumps(dashboard_body(v[0], v[1], v[2], plan.region))),
            opts=self._child)
        self.register_outputs({"topic_arn": self.topic.arn})

    def _alarm(self, key: str, namespace: str, metric: str, dimensions: dict, op: str, threshold: float,
               statistic: str | None, description: str, extended: str | None = None) -> None:
        self.alarms[key] = aws.cloudwatch.MetricAlarm(
            f"{self._name}-{key}", namespace=namespace, metric_name=metric, dimensions=dimensions,
            comparison_operator="GreaterThanThreshold" if op == ">" else "LessThanThreshold",
            threshold=round(threshold, 3), statistic=statistic, extended_statistic=extended,
            period=60, evaluation_periods=5, datapoints_to_alarm=3, treat_missing_data="notBreaching",
            alarm_description=description, alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn],
            tags=self._tags, opts=self._child)


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
