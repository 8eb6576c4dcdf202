"""A new VPC for the tracking platform, peered with the VPC your training compute runs in: private
subnets (and, with NAT, public ones) carved from the new range the way the planner does, routes
both ways over the peering, an S3 gateway endpoint, and the security groups of each hop.

Config (all optional; the training VPC defaults are placeholders, set yours before `pulumi up`):
  vpcCidr                the new VPC, /16 to /22, not overlapping the training VPC; default 10.70.0.0/20
  availabilityZones      JSON list, at least two; default <region>a and <region>b
  trainingVpcId          the VPC to peer with (same account and region)
  trainingCidr           its CIDR
  trainingRouteTableIds  JSON list: its route tables that get a route back to the new VPC
  natGateway             one NAT gateway per zone (adds public subnets), default false
"""

from __future__ import annotations

import ipaddress

import pulumi

from infra.aws import NetworkArgs, TrackingNetwork
from infra.planning.plan import subnet_cidrs

config = pulumi.Config()
region = pulumi.Config("aws").get("region") or "us-east-1"

vpc_cidr = config.get("vpcCidr") or "10.70.0.0/20"
zones = config.get_object("availabilityZones") or [f"{region}a", f"{region}b"]
training_vpc_id = config.get("trainingVpcId") or "vpc-0123456789abcdef0"
training_cidr = config.get("trainingCidr") or "10.10.0.0/16"
training_route_table_ids = config.get_object("trainingRouteTableIds") or ["rtb-0123456789abcdef0"]
nat_gateway = bool(config.get_bool("natGateway"))

# peering refuses overlapping ranges: say so before anything is declared
if ipaddress.ip_network(vpc_cidr).overlaps(ipaddress.ip_network(training_cidr)):
    raise pulumi.RunError(f"vpcCidr: {vpc_cidr!r} is not allowed; expected a range that does not overlap"
                          f" trainingCidr ({training_cidr}), so the two VPCs can be peered")
if len(zones) < 2:
    raise pulumi.RunError(f"availabilityZones: {len(zones)} given; expected at least two (an RDS subnet group"
                          " and a load balancer need two)")

private_cidrs, public_cidrs = subnet_cidrs(vpc_cidr, len(zones))   # a /24 each in a /20

network = TrackingNetwork("tracking-net", NetworkArgs(
    region=region,
    availability_zones=list(zones),
    new_vpc_cidr=vpc_cidr,
    private_subnet_cidrs=list(private_cidrs),
    public_subnet_cidrs=list(public_cidrs) if nat_gateway else [],
    nat_gateway=nat_gateway,
    training_vpc_id=training_vpc_id,
    training_cidr=training_cidr,
    training_route_table_ids=list(training_route_table_ids),
    tags={"owner": "ml-platform", "purpose": "mlflow-infra-example"},
))

pulumi.export("vpc_id", network.vpc_id)
pulumi.export("vpc_cidr", network.vpc_cidr)
pulumi.export("private_subnet_ids", network.private_subnet_ids)            # the database-only example's subnetIds
pulumi.export("client_security_group_id", network.client_sg.id)           # attach to training compute
pulumi.export("database_security_group_id", network.db_sg.id)             # the database-only example's securityGroupId
if nat_gateway:
    pulumi.export("public_subnet_ids", network.public_subnet_ids)
