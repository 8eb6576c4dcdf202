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

from ..endpoints import DATABASE_PORT
from ..planning.plan import TierPlan
from .artifacts import bucket_policy
from .auth import auth_secret
from .iam import assume_role_policy, secret_read_policy
from .rendering import LOG_RETENTION_DAYS, Runtime, container_definitions, user_data

ASSUME_ECS_TASKS = assume_role_policy("ecs-tasks.amazonaws.com")
ASSUME_EC2 = assume_role_policy("ec2.amazonaws.com")
# Amazon Linux 2023 for arm64 (Graviton), resolved by EC2 at launch from the public SSM parameter.
AL2023_ARM64 = "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass
class FleetResources:
    """What one tier (api or ui) got: its load balancer and target group, and either an ECS service
    with its task definition or an Auto Scaling group with its launch template."""

    load_balancer: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    url: pulumi.Output[str]
    service: aws.ecs.Service | None = None
    task_definition: aws.ecs.TaskDefinition | None = None
    autoscaling_group: aws.autoscaling.Group | None = None
    launch_template: aws.ec2.LaunchTemplate | None = None


@dataclass
class ServiceArgs:
    """The server tiers and where they run. `tiers` are the plan's (`plan.tracking.tiers`): each
    carries its size, workers, pool, command line, scaling target and counts."""

    tiers: list[TierPlan]
    compute: str
    """ecs (Fargate, arm64) or ec2 (Graviton instances from the tiers' instance types)."""
    mlflow_version: str
    """The image tag pushed to the repository, and the version EC2 instances install."""
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
    """Read replicas' addresses; the UI tier reads from them when its tier plan says so."""
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
    entrypoint_package: str = "mlflow-infra"
    """What EC2 instances pip-install for the entrypoint (a wheel URL or "mlflow-infra==X")."""
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
            idle_timeout=120,  # a large search or artifact listing may take a while
            tags=args.tags, opts=self._child)
        tg = aws.lb.TargetGroup(
            f"{name}-{role}", port=server.port, protocol="HTTP", vpc_id=args.vpc_id,
            target_type="ip" if args.compute == "ecs" else "instance",
            deregistration_delay=30,
            health_check={"path": server.health_path, "matcher": "200", "interval": 15, "timeout": 5,
                          "healthy_threshold": 2, "unhealthy_threshold": 3},
            tags=args.tags, opts=self._child)
        forward = [{"type": "forward", "target_group_arn": tg.arn}]
        if public:
            aws.lb.Listener(f"{name}-{role}-https", load_balancer_arn=lb.arn, port=443, protocol="HTTPS",
                            ssl_policy=TLS_POLICY, certificate_arn=args.ui_certificate_arn, default_actions=forward,
                            tags=args.tags, opts=self._child)
            aws.lb.Listener(f"{name}-{role}-http", load_balancer_arn=lb.arn, port=80, protocol="HTTP",
                            default_actions=[{"type": "redirect", "redirect": {"port": "443", "protocol": "HTTPS",
                                                                               "status_code": "HTTP_301"}}],
                            tags=args.tags, opts=self._child)
        else:
            aws.lb.Listener(f"{name}-{role}-http", load_balancer_arn=lb.arn, port=80, protocol="HTTP",
                            default_actions=forward, tags=args.tags, opts=self._child)
        scheme = "https" if public else "http"
        return FleetResources(lb, tg, lb.dns_name.apply(lambda d: f"{scheme}://{d}"))

    # -- the runtime strings every rendering needs ---------------------------------------------------
    def _runtime(self, role: str, args: ServiceArgs, log_group: pulumi.Input[str]) -> pulumi.Output[Runtime]:
        """The resolved strings every rendering needs; the UI reads the first replica (one per task
        until the UI is spread over replicas)."""
        replica = args.replica_endpoints[0] if args.replica_endpoints else ""
        region = aws.get_region_output().region
        return pulumi.Output.all(self.image, region, args.db_endpoint, replica, args.secret_arn, log_group,
                                 args.artifacts_destination, self.fleets[role].load_balancer.dns_name,
                                 self.auth_secret_arn or "", args.master_secret_arn or "", args.db_primary_address or "").apply(
            lambda v: Runtime(image=v[0], region=v[1], db_host=v[2], db_port=DATABASE_PORT, replica_host=v[3] or None,
                              secret_arn=v[4], log_group=v[5], artifacts_destination=v[6], load_balancer_host=v[7],
                              auth_secret_arn=v[8] or None, master_secret_arn=v[9] or None, primary_host=v[10] or None))

    def _task_role(self, name: str, tier: TierPlan, args: ServiceArgs, assume: str) -> aws.iam.Role:
        role = tier.role
        task_role = aws.iam.Role(f"{name}-{role}-task", assume_role_policy=assume, tags=args.tags, opts=self._child)
        aws.iam.RolePolicy(f"{name}-{role}-artifacts", role=task_role.id,
                           policy=pulumi.Output.from_input(args.bucket_arn).apply(lambda arn: bucket_policy(arn, write=tier.writes_artifacts)),
                           opts=self._child)
        return task_role

    def _secret_policy(self, args: ServiceArgs) -> pulumi.Output[str]:
        """Read exactly the secrets the task's containers (the instance's units) need, and decrypt them:
        the app secret (servers), the master secret (the migrate step, which runs in every task and
        on every instance), and the basic-auth secret when a tier uses it."""
        readable = [args.secret_arn, *(a for a in (args.master_secret_arn, self.auth_secret_arn) if a is not None)]
        return secret_read_policy(readable, args.kms_key_arn)

    # -- ECS Fargate ---------------------------------------------------------------------------------
    def _ecs_service(self, name: str, tier: TierPlan, args: ServiceArgs) -> None:
        role, tags, fleet = tier.role, args.tags, self.fleets[tier.role]
        logs = aws.cloudwatch.LogGroup(f"{name}-{role}", retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=self._child)
        execution = aws.iam.Role(f"{name}-{role}-execution", assume_role_policy=ASSUME_ECS_TASKS,
                                 managed_policy_arns=["arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"],
                                 tags=tags, opts=self._child)
        # ECS reads the secrets to inject DB_USERNAME/DB_PASSWORD (app role into the server, master into
        # the migrate container) and the basic-auth secret's keys: the task itself never can
        aws.iam.RolePolicy(f"{name}-{role}-secret", role=execution.id, policy=self._secret_policy(args), opts=self._child)
        task_role = self._task_role(name, tier, args, ASSUME_ECS_TASKS)
        definitions = self._runtime(role, args, logs.name).apply(lambda rt: json.dumps(container_definitions(tier, rt)))
        task = aws.ecs.TaskDefinition(
            f"{name}-{role}", family=f"{name}-{role}", cpu=str(tier.task_cpu_units), memory=str(tier.task_memory_mib),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"], runtime_platform={"cpu_architecture": "ARM64", "operating_system_family": "LINUX"},
            execution_role_arn=execution.arn, task_role_arn=task_role.arn, container_definitions=definitions,
            tags=tags, opts=self._child)
        service = aws.ecs.Service(
            f"{name}-{role}", cluster=self.cluster.arn, task_definition=task.arn, launch_type="FARGATE",
            desired_count=tier.min_count,
            network_configuration={"subnets": args.private_subnet_ids, "security_groups": [args.tasks_security_group_id],
                                   "assign_public_ip": False},
            load_balancers=[{"target_group_arn": fleet.target_group.arn, "container_name": "mlflow", "container_port": tier.server.port}],
            deployment_circuit_breaker={"enable": True, "rollback": True},
            deployment_minimum_healthy_percent=100, deployment_maximum_percent=200,
            health_check_grace_period_seconds=120, propagate_tags="SERVICE", enable_ecs_managed_tags=True,
            tags=tags,
            # autoscaling owns the running count after creation
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCount"],
                                        depends_on=[fleet.load_balancer]))
        target = aws.appautoscaling.Target(
            f"{name}-{role}", service_namespace="ecs", scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.all(self.cluster.name, service.name).apply(lambda v: f"service/{v[0]}/{v[1]}"),
            min_capacity=tier.min_count, max_capacity=tier.max_count, tags=tags, opts=self._child)
        aws.appautoscaling.Policy(
            f"{name}-{role}-cpu", policy_type="TargetTrackingScaling", service_namespace=target.service_namespace,
            resource_id=target.resource_id, scalable_dimension=target.scalable_dimension,
            target_tracking_scaling_policy_configuration={
                "target_value": tier.scaling_target_cpu_percent,
                "predefined_metric_specification": {"predefined_metric_type": "ECSServiceAverageCPUUtilization"},
                "scale_in_cooldown": 300, "scale_out_cooldown": 60},
            opts=self._child)
        fleet.service, fleet.task_definition = service, task

    # -- EC2 -------------------------------------------------------------------------------------------
    def _ec2_fleet(self, name: str, tier: TierPlan, args: ServiceArgs) -> None:
        role, tags, fleet = tier.role, args.tags, self.fleets[tier.role]
        logs = aws.cloudwatch.LogGroup(f"{name}-{role}", retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=self._child)
        instance_role = self._task_role(name, tier, args, ASSUME_EC2)
        # the instance reads the secrets itself (no ECS injection on EC2): the app secret for the server,
        # the master secret for the migrate unit, and the basic-auth secret
        aws.iam.RolePolicy(f"{name}-{role}-secret", role=instance_role.id, policy=self._secret_policy(args), opts=self._child)
        aws.iam.RolePolicyAttachment(f"{name}-{role}-ssm", role=instance_role.name,
                                     policy_arn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore", opts=self._child)
        profile = aws.iam.InstanceProfile(f"{name}-{role}", role=instance_role.name, tags=tags, opts=self._child)
        script = self._runtime(role, args, logs.name).apply(
            lambda rt: base64.b64encode(user_data(tier, rt, args.entrypoint_package, args.mlflow_version, args.environment).encode()).decode())
        template = aws.ec2.LaunchTemplate(
            f"{name}-{role}", image_id=AL2023_ARM64, instance_type=tier.instance_type,
            iam_instance_profile={"arn": profile.arn}, vpc_security_group_ids=[args.tasks_security_group_id],
            metadata_options={"http_tokens": "required", "http_endpoint": "enabled", "http_put_response_hop_limit": 1},
            block_device_mappings=[{"device_name": "/dev/xvda",
                                    "ebs": {"volume_size": 30, "volume_type": "gp3", "encrypted": "true", "delete_on_termination": "true"}}],
            user_data=script, update_default_version=True,
            tag_specifications=[{"resource_type": "instance", "tags": tags}, {"resource_type": "volume", "tags": tags}],
            tags=tags, opts=self._child)
        group = aws.autoscaling.Group(
            f"{name}-{role}", min_size=tier.min_count, max_size=tier.max_count, desired_capacity=tier.min_count,
            vpc_zone_identifiers=args.private_subnet_ids, target_group_arns=[fleet.target_group.arn],
            health_check_type="ELB", health_check_grace_period=300,
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            instance_refresh={"strategy": "Rolling", "preferences": {"min_healthy_percentage": 50}},
            tags=[{"key": k, "value": v, "propagate_at_launch": True} for k, v in sorted(tags.items())],
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCapacity"]))
        aws.autoscaling.Policy(
            f"{name}-{role}-cpu", autoscaling_group_name=group.name, policy_type="TargetTrackingScaling",
            target_tracking_configuration={"target_value": tier.scaling_target_cpu_percent,
                                           "predefined_metric_specification": {"predefined_metric_type": "ASGAverageCPUUtilization"}},
            opts=self._child)
        fleet.autoscaling_group, fleet.launch_template = group, template
