"""Network placement (bottleneck 6, network distance): the tracking platform sits in the training compute's
VPC and zones, or in a new VPC peered with it; S3 stays on a gateway endpoint; security groups
open only what each hop needs, and nothing reaches the database from 0.0.0.0/0."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from ..endpoints import DATABASE_PORT as DB_PORT, TRACKING_PORT


@dataclass
class NetworkArgs:
    """Where the platform goes. Either `training_vpc_id` + `training_subnet_ids` (placed there), or
    `new_vpc_cidr` + `availability_zones` + one private (and, with NAT or a public UI, one public)
    subnet CIDR per zone (a new VPC, peered with the training VPC if one is given).
    `infra.planning.plan.subnet_cidrs(cidr, zones)` carves them the way the plan does."""

    region: str
    availability_zones: list[str]
    """The zones the platform uses: the training compute's."""
    training_vpc_id: str | None = None
    """The VPC the training compute runs in; the client security group goes there."""
    training_cidr: str | None = None
    training_subnet_ids: list[str] = field(default_factory=list)
    """Placed in the training VPC: the private subnets the servers and database use."""
    training_route_table_ids: list[str] = field(default_factory=list)
    """Peered: the training VPC's route tables that get a route to the new VPC."""
    new_vpc_cidr: str | None = None
    """A new VPC (a /16 to /22 private range that does not overlap the training VPC)."""
    private_subnet_cidrs: list[str] = field(default_factory=list)
    public_subnet_cidrs: list[str] = field(default_factory=list)
    nat_gateway: bool = True
    """One NAT gateway per zone (new VPC); without NAT, pass the interface endpoints tasks need."""
    interface_endpoint_services: list[str] = field(default_factory=list)
    """Interface endpoints to create, such as ecr.api, ecr.dkr, logs, secretsmanager (no NAT)."""
    public_subnets: bool = False
    """An internet-facing UI load balancer needs public subnets."""
    internet_facing_ui: bool = False
    """Open the UI load balancer's security group to the internet on 443 (and 80 for the redirect)."""
    tracking_port: int = TRACKING_PORT
    """The port the MLflow servers listen on."""
    ready_port: int | None = None
    """UI servers reading a replica answer the UI load balancer's health check on this port."""
    tags: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """Raise ValueError naming the field when the placement is incomplete; nothing is created then."""
        if self.new_vpc_cidr is None:
            if not self.training_vpc_id or not self.training_subnet_ids:
                raise ValueError("NetworkArgs: training_vpc_id and training_subnet_ids are required without new_vpc_cidr")
            return
        zones = len(self.availability_zones)
        if len(self.private_subnet_cidrs) != zones:
            raise ValueError(f"NetworkArgs.private_subnet_cidrs: {len(self.private_subnet_cidrs)} given; expected one per zone ({zones})")
        if (self.nat_gateway or self.public_subnets) and len(self.public_subnet_cidrs) != zones:
            raise ValueError(f"NetworkArgs.public_subnet_cidrs: {len(self.public_subnet_cidrs)} given; expected one per zone ({zones})"
                             " with nat_gateway or public_subnets")


class TrackingNetwork(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-infra:network:TrackingNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags
        args.check()
        port = args.tracking_port
        public_ids: list = []
        private_route_tables: list = []
        if args.new_vpc_cidr is None:
            vpc_id: pulumi.Input[str] = args.training_vpc_id
            vpc_cidr = args.training_cidr
            private_ids: list = list(args.training_subnet_ids)
            private_route_tables = list(args.training_route_table_ids)
        else:
            vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.new_vpc_cidr, enable_dns_support=True,
                              enable_dns_hostnames=True, tags={**tags, "Name": f"{name}-vpc"}, opts=child)
            vpc_id, vpc_cidr = vpc.id, args.new_vpc_cidr
            private_cidrs, public_cidrs = args.private_subnet_cidrs, args.public_subnet_cidrs
            private_ids = []
            needs_public = args.nat_gateway or args.public_subnets
            if needs_public:
                igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
                public_rt = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-public"},
                                               routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}], opts=child)
            for i, zone in enumerate(args.availability_zones):
                private = aws.ec2.Subnet(f"{name}-private-{zone}", vpc_id=vpc.id, cidr_block=private_cidrs[i],
                                         availability_zone=zone, map_public_ip_on_launch=False,
                                         tags={**tags, "Name": f"{name}-private-{zone}", "tier": "private"}, opts=child)
                private_ids.append(private.id)
                routes = []
                if needs_public:
                    public = aws.ec2.Subnet(f"{name}-public-{zone}", vpc_id=vpc.id, cidr_block=public_cidrs[i],
                                            availability_zone=zone, map_public_ip_on_launch=False,
                                            tags={**tags, "Name": f"{name}-public-{zone}", "tier": "public"}, opts=child)
                    public_ids.append(public.id)
                    aws.ec2.RouteTableAssociation(f"{name}-public-{zone}", subnet_id=public.id,
                                                  route_table_id=public_rt.id, opts=child)
                    if args.nat_gateway:
                        eip = aws.ec2.Eip(f"{name}-nat-{zone}", domain="vpc", tags=tags, opts=child)
                        nat = aws.ec2.NatGateway(f"{name}-nat-{zone}", subnet_id=public.id, allocation_id=eip.id,
                                                 tags=tags, opts=child)
                        routes.append({"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id})
                rt = aws.ec2.RouteTable(f"{name}-private-{zone}", vpc_id=vpc.id, routes=routes,
                                        tags={**tags, "Name": f"{name}-private-{zone}"}, opts=child)
                aws.ec2.RouteTableAssociation(f"{name}-private-{zone}", subnet_id=private.id, route_table_id=rt.id, opts=child)
                private_route_tables.append(rt.id)
            if args.training_vpc_id:
                self._peer(name, args, vpc.id, private_route_tables, child)

        # S3 through a gateway endpoint: artifact traffic never crosses NAT or the internet
        if private_route_tables:
            aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc_id, service_name=f"com.amazonaws.{args.region}.s3",
                                vpc_endpoint_type="Gateway", route_table_ids=private_route_tables, tags=tags, opts=child)

        cidrs = [c for c in (vpc_cidr, args.training_cidr) if c]
        # in the training VPC, so training compute can carry it even when the platform is peered
        self.client_sg = aws.ec2.SecurityGroup(
            f"{name}-clients", vpc_id=args.training_vpc_id or vpc_id, description="Attach to training compute: may call the MLflow API",
            egress=[{"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr_blocks": sorted(set(cidrs)),
                     "description": "MLflow API load balancer"}],
            tags={**tags, "Name": f"{name}-clients"}, opts=child)
        api_sources = ({"security_groups": [self.client_sg.id]} if args.new_vpc_cidr is None
                       else {"cidr_blocks": [args.training_cidr or vpc_cidr]})
        self.api_lb_sg = aws.ec2.SecurityGroup(
            f"{name}-api-lb", vpc_id=vpc_id, description="Internal MLflow API load balancer",
            ingress=[{"protocol": "tcp", "from_port": 80, "to_port": 80, "description": "training compute", **api_sources}],
            egress=[{"protocol": "tcp", "from_port": port, "to_port": port, "cidr_blocks": [vpc_cidr], "description": "tracking tasks"}],
            tags={**tags, "Name": f"{name}-api-lb"}, opts=child)
        if args.internet_facing_ui:
            ui_ingress = [{"protocol": "tcp", "from_port": p, "to_port": p, "cidr_blocks": ["0.0.0.0/0"],
                           "description": "HTTPS (and the redirect from HTTP)"} for p in (443, 80)]
        else:
            ui_ingress = [{"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr_blocks": sorted(set(cidrs)),
                           "description": "people on the VPC network"}]
        ui_egress = [{"protocol": "tcp", "from_port": port, "to_port": port, "cidr_blocks": [vpc_cidr], "description": "tracking tasks"}]
        if args.ready_port:
            ui_egress.append({"protocol": "tcp", "from_port": args.ready_port, "to_port": args.ready_port, "cidr_blocks": [vpc_cidr],
                              "description": "UI tasks' readiness (health checks)"})
        self.ui_lb_sg = aws.ec2.SecurityGroup(
            f"{name}-ui-lb", vpc_id=vpc_id, description="MLflow UI load balancer", ingress=ui_ingress, egress=ui_egress,
            tags={**tags, "Name": f"{name}-ui-lb"}, opts=child)
        tasks_ingress = [{"protocol": "tcp", "from_port": port, "to_port": port, "description": "load balancers",
                          "security_groups": [self.api_lb_sg.id, self.ui_lb_sg.id]}]
        if args.ready_port:
            tasks_ingress.append({"protocol": "tcp", "from_port": args.ready_port, "to_port": args.ready_port,
                                  "description": "UI load balancer health checks", "security_groups": [self.ui_lb_sg.id]})
        self.tasks_sg = aws.ec2.SecurityGroup(
            f"{name}-tasks", vpc_id=vpc_id, description="MLflow tracking servers",
            ingress=tasks_ingress,
            # image pulls, CloudWatch Logs, Secrets Manager and S3 over 443; the database on 5432
            egress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"], "description": "AWS APIs"},
                    {"protocol": "tcp", "from_port": DB_PORT, "to_port": DB_PORT, "cidr_blocks": [vpc_cidr], "description": "PostgreSQL"}],
            tags={**tags, "Name": f"{name}-tasks"}, opts=child)
        self.proxy_sg = aws.ec2.SecurityGroup(
            f"{name}-proxy", vpc_id=vpc_id, description="RDS Proxy in front of the tracking database",
            ingress=[{"protocol": "tcp", "from_port": DB_PORT, "to_port": DB_PORT, "security_groups": [self.tasks_sg.id],
                      "description": "tracking servers"}],
            egress=[{"protocol": "tcp", "from_port": DB_PORT, "to_port": DB_PORT, "cidr_blocks": [vpc_cidr], "description": "database"}],
            tags={**tags, "Name": f"{name}-proxy"}, opts=child)
        self.db_sg = aws.ec2.SecurityGroup(
            f"{name}-db", vpc_id=vpc_id, description="MLflow tracking database: 5432 from the servers and the proxy only",
            ingress=[{"protocol": "tcp", "from_port": DB_PORT, "to_port": DB_PORT, "description": "servers and proxy",
                      "security_groups": [self.tasks_sg.id, self.proxy_sg.id]}],
            tags={**tags, "Name": f"{name}-db"}, opts=child)
        if args.interface_endpoint_services:
            endpoint_sg = aws.ec2.SecurityGroup(
                f"{name}-endpoints", vpc_id=vpc_id, description="Interface endpoints for ECR, logs, Secrets Manager",
                ingress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": [vpc_cidr], "description": "VPC"}],
                tags={**tags, "Name": f"{name}-endpoints"}, opts=child)
            for service in args.interface_endpoint_services:
                aws.ec2.VpcEndpoint(f"{name}-{service.replace('.', '-')}", vpc_id=vpc_id,
                                    service_name=f"com.amazonaws.{args.region}.{service}", vpc_endpoint_type="Interface",
                                    private_dns_enabled=True, subnet_ids=private_ids, security_group_ids=[endpoint_sg.id],
                                    tags=tags, opts=child)

        self.vpc_id = pulumi.Output.from_input(vpc_id)
        self.vpc_cidr = vpc_cidr
        self.private_subnet_ids = pulumi.Output.all(*private_ids)
        self.public_subnet_ids = pulumi.Output.all(*public_ids)
        self.register_outputs({"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids,
                               "client_security_group_id": self.client_sg.id})

    def _peer(self, name: str, args: NetworkArgs, vpc_id, private_route_tables: list, child) -> None:
        """Same-account, same-region peering with routes both ways: training traffic stays private."""
        peering = aws.ec2.VpcPeeringConnection(f"{name}-peering", vpc_id=vpc_id, peer_vpc_id=args.training_vpc_id,
                                               auto_accept=True, tags=args.tags, opts=child)
        for i, rt in enumerate(private_route_tables):
            aws.ec2.Route(f"{name}-to-training-{i}", route_table_id=rt, destination_cidr_block=args.training_cidr,
                          vpc_peering_connection_id=peering.id, opts=child)
        for rt in args.training_route_table_ids:
            aws.ec2.Route(f"{name}-from-training-{rt}", route_table_id=rt, destination_cidr_block=args.new_vpc_cidr,
                          vpc_peering_connection_id=peering.id, opts=child)
