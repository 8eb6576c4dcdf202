"""The tracking servers (bottleneck 5, a starved server): API and UI as separate services behind their own
load balancers, each sized and autoscaled by the plan; ECS Fargate by default, EC2 as an option.
The API load balancer is internal (training traffic stays in the VPC); the UI's is internal unless
asked otherwise, and then HTTPS only."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from ..endpoints import DATABASE_PORT, LOAD_BALANCER_IDLE_TIMEOUT_S, TARGET_TAG
from ..planning.plan import TierPlan
from .artifacts import bucket_policy
from .auth import auth_secret
from .iam import assume_role_policy, pre_upgrade_snapshot_policy, secret_read_policy
from .instance import AMI_PARAMETER, instance_role_policy, user_data
from .rendering import LOG_RETENTION_DAYS, Runtime, container_definitions

ASSUME_ECS_TASKS = assume_role_policy("ecs-tasks.amazonaws.com")
ASSUME_EC2 = assume_role_policy("ec2.amazonaws.com")
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# A target is out of the load balancer's rotation 3 x 10 s after it stops answering: a UI task whose
# replica is lost stops getting requests within 30 s (plus the 5 s timeout of a hanging check).
HEALTH_CHECK_INTERVAL_S = 10
UNHEALTHY_THRESHOLD = 3


@dataclass
class FleetResources:
    """What one tier (api or ui) got: its load balancer and target group, and either ECS services
    with their task definitions or Auto Scaling groups with their launch templates: one for the API,
    one per read replica for a UI that reads replicas (each reads its own), all in the one target group."""

    load_balancer: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    url: pulumi.Output[str]
    listener: aws.lb.Listener | None = None
    """The listener that forwards to the target group: ECS refuses a service whose target group no listener uses yet."""
    service_names: list[str] = field(default_factory=list)
    """The plan's names of the services, in order (api; ui, ui-2, ...)."""
    services: list[aws.ecs.Service] = field(default_factory=list)
    task_definitions: list[aws.ecs.TaskDefinition] = field(default_factory=list)
    autoscaling_groups: list[aws.autoscaling.Group] = field(default_factory=list)
    launch_templates: list[aws.ec2.LaunchTemplate] = field(default_factory=list)


@dataclass(frozen=True)
class ServiceUnit:
    """One ECS service (or Auto Scaling group) of a tier: its resource name and the replica it reads."""

    name: str
    replica: pulumi.Input[str] | None
    service: str = ""
    """The plan's name of the service in its tier (api, ui, ui-2, ...): alarms find its dimensions by it."""


def service_units(name: str, tier: TierPlan, replica_endpoints: list[pulumi.Input[str]]) -> list[ServiceUnit]:
    """`NAME-ROLE` for the first (the names every stack had before replicas got services of their own,
    so nothing is replaced), `NAME-ui-2`, `NAME-ui-3`, ... for the UI services of further replicas."""
    if not tier.reads_from_replica:
        return [ServiceUnit(f"{name}-{tier.role}", None, tier.role)]
    if len(replica_endpoints) != tier.services:
        raise ValueError(f"ServiceArgs.replica_endpoints: {len(replica_endpoints)} given, but the {tier.role} tier plan has"
                         f" {tier.services} services, one per read replica; expected {tier.services} endpoints")
    return [ServiceUnit(f"{name}-{unit}", replica, unit) for unit, replica in zip(tier.service_names, replica_endpoints)]


@dataclass
class ServiceArgs:
    """The server tiers and where they run. `tiers` are the plan's (`plan.tracking.tiers`): each
    carries its size, workers, pool, command line, scaling target and counts."""

    tiers: list[TierPlan]
    compute: str
    """ecs (Fargate, arm64) or ec2 (Graviton instances from the tiers' instance types)."""
    mlflow_version: str
    """The image tag pushed to the repository: ECS tasks and EC2 instances run that one image."""
    environment: str
    """The environment's name, written into EC2 user data."""
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list[str]]
    """Where the servers and internal load balancers run (the training compute's zones)."""
    public_subnet_ids: pulumi.Input[list[str]]
    """Only an internet-facing UI load balancer uses them; may be empty otherwise."""
    tasks_security_group_id: pulumi.Input[str]
    api_lb_security_group_id: pulumi.Input[str]
    ui_lb_security_group_id: pulumi.Input[str]
    db_endpoint: pulumi.Input[str]
    """The primary's (or RDS Proxy's) address: every write goes there."""
    replica_endpoints: list[pulumi.Input[str]]
    """Read replicas' addresses; when its tier plan says so, the UI gets one service per replica, reading it."""
    secret_arn: pulumi.Input[str]
    """The servers' database secret (JSON username and password of the application role), injected by
    ECS or read on EC2."""
    kms_key_arn: pulumi.Input[str]
    """The key that encrypts the secret (and the basic-auth secret)."""
    bucket_arn: pulumi.Input[str]
    artifacts_destination: pulumi.Input[str]
    """`s3://bucket/prefix` for `--artifacts-destination` (the servers proxy artifacts)."""
    image: str | None = None
    """A server image URI; None builds the tag from the repository this component creates."""
    ui_internet_facing: bool = False
    """Internet-facing UI (HTTPS only, with `ui_certificate_arn`); internal by default."""
    ui_certificate_arn: str | None = None
    production: bool = True
    """Deletion protection on the load balancers; the image repository is never force-deleted."""
    tags: dict[str, str] = field(default_factory=dict)
    master_secret_arn: pulumi.Input[str] | None = None
    """The master user's secret (JSON username, password), for the migrate step only: it logs in with it
    and creates the application role of `secret_arn` (or sets its password). None: the migrate step
    logs in with `secret_arn` and manages no role (a database whose owner the servers log in as)."""
    db_primary_address: pulumi.Input[str] | None = None
    """The primary's own address, where the migrate step connects when `db_endpoint` is RDS Proxy
    (which authenticates the application role only); None: `db_endpoint`."""
    db_instance_identifier: pulumi.Input[str] | None = None
    db_instance_arn: pulumi.Input[str] | None = None
    """The primary RDS instance: the migrate step (API tasks) snapshots it before a schema upgrade, and
    its task role may do exactly that. None: no snapshot (a database this component does not manage).
    On Aurora: the cluster's ARN, with `db_cluster_identifier`."""
    db_cluster_identifier: pulumi.Input[str] | None = None
    """Aurora: the cluster the migrate step snapshots instead of an instance."""
    auth_secret_arn: pulumi.Input[str] | None = None
    """Tiers with basic-auth only (tracking.auth: basic): a secret with JSON keys secret_key,
    admin_username and admin_password, encrypted with `kms_key_arn`. None generates one."""


class TrackingService(pulumi.ComponentResource):
    """Outputs: `api_url`, `ui_url`, `repository` (push the image here), `fleets` (by role)."""

    def __init__(self, name: str, args: ServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-infra:service:TrackingService", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        tags, production = args.tags, args.production
        roles = [t.role for t in args.tiers]
        if sorted(roles) != ["api", "ui"]:
            raise ValueError(f"ServiceArgs.tiers: roles {roles} are not allowed; expected one api and one ui tier")

        self.repository = aws.ecr.Repository(
            f"{name}-image", image_tag_mutability="IMMUTABLE", image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS"}], force_delete=not production, tags=tags, opts=self._child)
        self.image = (pulumi.Output.from_input(args.image) if args.image
                      else self.repository.repository_url.apply(lambda url: f"{url}:{args.mlflow_version}"))
        self.fleets: dict[str, FleetResources] = {t.role: self._load_balancer(name, t, args, production) for t in args.tiers}
        # basic-auth: one secret for every server, so they share the Flask key and the admin user
        self.auth_secret_arn: pulumi.Output[str] | None = None
        if any(t.server.auth_secret_environment for t in args.tiers):
            self.auth_secret_arn = pulumi.Output.from_input(
                args.auth_secret_arn if args.auth_secret_arn is not None
                else auth_secret(f"{name}-auth", args.kms_key_arn, tags, self._child))

        self.cluster = None
        if args.compute == "ecs":
            self.cluster = aws.ecs.Cluster(f"{name}-cluster", settings=[{"name": "containerInsights", "value": "enabled"}],
                                           tags=tags, opts=self._child)
            for tier in args.tiers:
                self._ecs_service(name, tier, args)
        else:
            for tier in args.tiers:
                self._ec2_fleet(name, tier, args)

        self.api_url = self.fleets["api"].url
        self.ui_url = self.fleets["ui"].url
        self.register_outputs({"api_url": self.api_url, "ui_url": self.ui_url})

    # -- load balancers ---------------------------------------------------------------------------
    def _load_balancer(self, name: str, tier: TierPlan, args: ServiceArgs, production: bool) -> FleetResources:
        role, server = tier.role, tier.server
        public = role == "ui" and args.ui_internet_facing
        sg = args.api_lb_security_group_id if role == "api" else args.ui_lb_security_group_id
        lb = aws.lb.LoadBalancer(
            f"{name}-{role}", internal=not public, load_balancer_type="application", security_groups=[sg],
            subnets=args.public_subnet_ids if public else args.private_subnet_ids,
            drop_invalid_header_fields=True, enable_deletion_protection=production,
            idle_timeout=LOAD_BALANCER_IDLE_TIMEOUT_S,
            tags={**args.tags, TARGET_TAG: f"{role}-lb"}, opts=self._child)
        health_port, health_path = server.load_balancer_health
        tg = aws.lb.TargetGroup(
            f"{name}-{role}", port=server.port, protocol="HTTP", vpc_id=args.vpc_id,
            target_type="ip" if args.compute == "ecs" else "instance",
            deregistration_delay=30,
            # a UI task reading a replica answers on its readiness port: unhealthy while its replica cannot answer
            health_check={"path": health_path, "port": "traffic-port" if health_port == server.port else str(health_port),
                          "matcher": "200", "interval": HEALTH_CHECK_INTERVAL_S, "timeout": 5,
                          "healthy_threshold": 2, "unhealthy_threshold": UNHEALTHY_THRESHOLD},
            tags={**args.tags, TARGET_TAG: f"{role}-tg"}, opts=self._child)
        forward = [{"type": "forward", "target_group_arn": tg.arn}]
        if public:
            listener = aws.lb.Listener(f"{name}-{role}-https", load_balancer_arn=lb.arn, port=443, protocol="HTTPS",
                                       ssl_policy=TLS_POLICY, certificate_arn=args.ui_certificate_arn, default_actions=forward,
                                       tags=args.tags, opts=self._child)
            aws.lb.Listener(f"{name}-{role}-http", load_balancer_arn=lb.arn, port=80, protocol="HTTP",
                            default_actions=[{"type": "redirect", "redirect": {"port": "443", "protocol": "HTTPS",
                                                                               "status_code": "HTTP_301"}}],
                            tags=args.tags, opts=self._child)
        else:
            listener = aws.lb.Listener(f"{name}-{role}-http", load_balancer_arn=lb.arn, port=80, protocol="HTTP",
                                       default_actions=forward, tags=args.tags, opts=self._child)
        scheme = "https" if public else "http"
        return FleetResources(lb, tg, lb.dns_name.apply(lambda d: f"{scheme}://{d}"), listener)

    # -- the runtime strings every rendering needs ---------------------------------------------------
    def _runtime(self, role: str, args: ServiceArgs, log_group: pulumi.Input[str], replica: pulumi.Input[str] | None) -> pulumi.Output[Runtime]:
        """The resolved strings every rendering needs, for one service (`replica`: the one it reads)."""
        region = aws.get_region_output().region
        return pulumi.Output.all(self.image, region, args.db_endpoint, replica or "", args.secret_arn, log_group,
                                 args.artifacts_destination, self.fleets[role].load_balancer.dns_name,
                                 self.auth_secret_arn or "", args.master_secret_arn or "", args.db_primary_address or "",
                                 args.db_instance_identifier or "", args.db_cluster_identifier or "").apply(
            lambda v: Runtime(image=v[0], region=v[1], db_host=v[2], db_port=DATABASE_PORT, replica_host=v[3] or None,
                              secret_arn=v[4], log_group=v[5], artifacts_destination=v[6], load_balancer_host=v[7],
                              auth_secret_arn=v[8] or None, master_secret_arn=v[9] or None, primary_host=v[10] or None,
                              primary_instance_id=v[11] or None, primary_cluster_id=v[12] or None))

    def _task_role(self, name: str, tier: TierPlan, args: ServiceArgs, assume: str) -> aws.iam.Role:
        role = tier.role
        task_role = aws.iam.Role(f"{name}-{role}-task", assume_role_policy=assume, tags=args.tags, opts=self._child)
        aws.iam.RolePolicy(f"{name}-{role}-artifacts", role=task_role.id,
                           policy=pulumi.Output.from_input(args.bucket_arn).apply(lambda arn: bucket_policy(arn, write=tier.writes_artifacts)),
                           opts=self._child)
        if tier.runs_migrations and args.db_instance_arn is not None:
            aws.iam.RolePolicy(f"{name}-{role}-snapshot", role=task_role.id, policy=pre_upgrade_snapshot_policy(args.db_instance_arn),
                               opts=self._child)
        return task_role

    def _secret_policy(self, tier: TierPlan, args: ServiceArgs) -> pulumi.Output[str]:
        """Read exactly the secrets the task's containers (the instance's units) need, and decrypt them:
        the app secret (servers), the master secret (the migrate step: the API tier's only), and the
        basic-auth secret when a tier uses it."""
        master = args.master_secret_arn if tier.runs_migrations else None
        readable = [args.secret_arn, *(a for a in (master, self.auth_secret_arn) if a is not None)]
        return secret_read_policy(readable, args.kms_key_arn)

    # -- ECS Fargate ---------------------------------------------------------------------------------
    def _ecs_service(self, name: str, tier: TierPlan, args: ServiceArgs) -> None:
        role, tags = tier.role, args.tags
        logs = aws.cloudwatch.LogGroup(f"{name}-{role}", retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=self._child)
        execution = aws.iam.Role(f"{name}-{role}-execution", assume_role_policy=ASSUME_ECS_TASKS,
                                 managed_policy_arns=["arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"],
                                 tags=tags, opts=self._child)
        # ECS reads the secrets to inject DB_USERNAME/DB_PASSWORD (app role into the server, master into
        # the migrate container) and the basic-auth secret's keys: the task itself never can
        aws.iam.RolePolicy(f"{name}-{role}-secret", role=execution.id, policy=self._secret_policy(tier, args), opts=self._child)
        task_role = self._task_role(name, tier, args, ASSUME_ECS_TASKS)
        for unit in service_units(name, tier, args.replica_endpoints):
            self._ecs_unit(unit, tier, args, logs, execution, task_role)

    def _ecs_unit(self, unit: ServiceUnit, tier: TierPlan, args: ServiceArgs, logs: aws.cloudwatch.LogGroup,
                  execution: aws.iam.Role, task_role: aws.iam.Role) -> None:
        tags, fleet = args.tags, self.fleets[tier.role]
        definitions = self._runtime(tier.role, args, logs.name, unit.replica).apply(lambda rt: json.dumps(container_definitions(tier, rt)))
        task = aws.ecs.TaskDefinition(
            unit.name, family=unit.name, cpu=str(tier.task_cpu_units), memory=str(tier.task_memory_mib),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"], runtime_platform={"cpu_architecture": "ARM64", "operating_system_family": "LINUX"},
            execution_role_arn=execution.arn, task_role_arn=task_role.arn, container_definitions=definitions,
            tags=tags, opts=self._child)
        service = aws.ecs.Service(
            unit.name, cluster=self.cluster.arn, task_definition=task.arn, launch_type="FARGATE",
            desired_count=tier.service_min_count,
            network_configuration={"subnets": args.private_subnet_ids, "security_groups": [args.tasks_security_group_id],
                                   "assign_public_ip": False},
            load_balancers=[{"target_group_arn": fleet.target_group.arn, "container_name": "mlflow", "container_port": tier.server.port}],
            deployment_circuit_breaker={"enable": True, "rollback": True},
            deployment_minimum_healthy_percent=100, deployment_maximum_percent=200,
            health_check_grace_period_seconds=120, propagate_tags="SERVICE", enable_ecs_managed_tags=True,
            tags={**tags, TARGET_TAG: f"{unit.service}-fleet"},
            # autoscaling owns the running count after creation
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCount"],
                                        depends_on=[fleet.listener]))
        target = aws.appautoscaling.Target(
            unit.name, service_namespace="ecs", scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.all(self.cluster.name, service.name).apply(lambda v: f"service/{v[0]}/{v[1]}"),
            min_capacity=tier.service_min_count, max_capacity=tier.service_max_count, tags=tags, opts=self._child)
        aws.appautoscaling.Policy(
            f"{unit.name}-cpu", policy_type="TargetTrackingScaling", service_namespace=target.service_namespace,
            resource_id=target.resource_id, scalable_dimension=target.scalable_dimension,
            target_tracking_scaling_policy_configuration={
                "target_value": tier.scaling_target_cpu_percent,
                "predefined_metric_specification": {"predefined_metric_type": "ECSServiceAverageCPUUtilization"},
                "scale_in_cooldown": 300, "scale_out_cooldown": 60},
            opts=self._child)
        fleet.service_names.append(unit.service)
        fleet.services.append(service)
        fleet.task_definitions.append(task)

    # -- EC2 -------------------------------------------------------------------------------------------
    def _ec2_fleet(self, name: str, tier: TierPlan, args: ServiceArgs) -> None:
        role, tags = tier.role, args.tags
        logs = aws.cloudwatch.LogGroup(f"{name}-{role}", retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=self._child)
        instance_role = self._task_role(name, tier, args, ASSUME_EC2)
        # the instance reads the secrets itself (no ECS injection on EC2): the app secret for the server,
        # the master secret for the migrate unit (API), and the basic-auth secret
        aws.iam.RolePolicy(f"{name}-{role}-secret", role=instance_role.id, policy=self._secret_policy(tier, args), opts=self._child)
        # the same image as ECS, pulled from the repository, and docker's awslogs driver writing the log group
        aws.iam.RolePolicy(f"{name}-{role}-image-logs", role=instance_role.id,
                           policy=pulumi.Output.all(self.repository.arn, logs.arn).apply(lambda v: instance_role_policy(v[0], v[1])),
                           opts=self._child)
        aws.iam.RolePolicyAttachment(f"{name}-{role}-ssm", role=instance_role.name,
                                     policy_arn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore", opts=self._child)
        profile = aws.iam.InstanceProfile(f"{name}-{role}", role=instance_role.name, tags=tags, opts=self._child)
        for unit in service_units(name, tier, args.replica_endpoints):
            self._ec2_unit(unit, tier, args, logs, profile)

    def _ec2_unit(self, unit: ServiceUnit, tier: TierPlan, args: ServiceArgs, logs: aws.cloudwatch.LogGroup,
                  profile: aws.iam.InstanceProfile) -> None:
        tags, fleet = args.tags, self.fleets[tier.role]
        script = self._runtime(tier.role, args, logs.name, unit.replica).apply(
            lambda rt: base64.b64encode(user_data(container_definitions(tier, rt), role=tier.role, environment=args.environment,
                                                  region=rt.region).encode()).decode())
        template = aws.ec2.LaunchTemplate(
            unit.name, image_id=AMI_PARAMETER, instance_type=tier.instance_type,
            iam_instance_profile={"arn": profile.arn}, vpc_security_group_ids=[args.tasks_security_group_id],
            metadata_options={"http_tokens": "required", "http_endpoint": "enabled", "http_put_response_hop_limit": 1},
            block_device_mappings=[{"device_name": "/dev/xvda",
                                    "ebs": {"volume_size": 30, "volume_type": "gp3", "encrypted": "true", "delete_on_termination": "true"}}],
            user_data=script, update_default_version=True,
            tag_specifications=[{"resource_type": "instance", "tags": tags}, {"resource_type": "volume", "tags": tags}],
            tags=tags, opts=self._child)
        group = aws.autoscaling.Group(
            unit.name, min_size=tier.service_min_count, max_size=tier.service_max_count, desired_capacity=tier.service_min_count,
            vpc_zone_identifiers=args.private_subnet_ids, target_group_arns=[fleet.target_group.arn],
            health_check_type="ELB", health_check_grace_period=300,
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            instance_refresh={"strategy": "Rolling", "preferences": {"min_healthy_percentage": 50}},
            tags=[{"key": k, "value": v, "propagate_at_launch": True}
                  for k, v in sorted({**tags, TARGET_TAG: f"{unit.service}-fleet"}.items())],
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCapacity"]))
        aws.autoscaling.Policy(
            f"{unit.name}-cpu", autoscaling_group_name=group.name, policy_type="TargetTrackingScaling",
            target_tracking_configuration={"target_value": tier.scaling_target_cpu_percent,
                                           "predefined_metric_specification": {"predefined_metric_type": "ASGAverageCPUUtilization"}},
            opts=self._child)
        fleet.service_names.append(unit.service)
        fleet.autoscaling_groups.append(group)
        fleet.launch_templates.append(template)
