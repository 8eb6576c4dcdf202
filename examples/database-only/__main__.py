"""The tracking database alone, in a VPC you already have: a Multi-AZ PostgreSQL primary, two read
replicas in two more zones, and the planner's tuned parameter groups (shared_buffers, work_mem,
max_connections... sized for the instance class), without the rest of the platform.

Config (all optional; the defaults are placeholders, set yours before `pulumi up`):
  subnetIds        private subnets in at least two zones (JSON list)
  securityGroupId  the database's security group: allow 5432 from your MLflow servers only
  instanceClass    an RDS class from the catalogue (mlflow-infra classes), default db.r7g.large
  engineVersion    PostgreSQL major (or major.minor), default 17
  maxConnections   the connection budget the parameters are sized for, default 400
  replicaZones     one read replica per zone (JSON list), default <region>b and <region>c
  multiAz          a standby for the primary, default true
  primaryZone      the primary's zone when multiAz is false (put it where your training runs), default <region>a
  protect          Pulumi protect + RDS deletion protection, default false (so `pulumi destroy` works)
"""

from __future__ import annotations

import pulumi

from infra.aws import DatabaseArgs, ParameterGroupArgs, ParameterSetting, TrackingDatabase, TrackingParameterGroup
from infra.planning import catalogue
from infra.planning.parameters import ParameterInputs, primary_parameters, replica_parameters

config = pulumi.Config()
region = pulumi.Config("aws").get("region") or "us-east-1"

subnet_ids = config.get_object("subnetIds") or ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1",
                                                "subnet-0123456789abcdef2"]
security_group_id = config.get("securityGroupId") or "sg-0123456789abcdef0"
class_name = config.get("instanceClass") or "db.r7g.large"
engine_version = config.get("engineVersion") or "17"
max_connections = config.get_int("maxConnections") or 400
replica_zones = config.get_object("replicaZones") or [f"{region}b", f"{region}c"]
multi_az = config.get_bool("multiAz")
multi_az = True if multi_az is None else multi_az
primary_zone = config.get("primaryZone") or f"{region}a"
protect = bool(config.get_bool("protect"))

# checked before anything is declared: a bad value stops the update with one line
try:
    instance = catalogue.instance_class(class_name)
except KeyError:
    raise pulumi.RunError(f"instanceClass: {class_name!r} is not allowed; expected a class from the catalogue,"
                          " such as db.r7g.large (mlflow-infra classes lists them)") from None
engine_major = int(engine_version.split(".")[0])
if engine_major not in catalogue.engine_majors():
    raise pulumi.RunError(f"engineVersion: {engine_version!r} is not allowed; expected one of"
                          f" {', '.join(str(m) for m in catalogue.engine_majors())}")

# The planner's tuned sets for this class: memory- and CPU-derived values follow the instance,
# max_connections is the budget you give it. Static parameters apply at the next reboot.
inputs = ParameterInputs(memory_bytes=instance.memory_bytes, vcpu=instance.vcpu,
                         max_connections=max_connections, engine_major=engine_major)
primary_settings = ParameterSetting.from_plan(primary_parameters(inputs))
replica_settings = ParameterSetting.from_plan(replica_parameters(inputs))
tags = {"owner": "ml-platform", "purpose": "mlflow-infra-example"}

database = TrackingDatabase("tracking-db", DatabaseArgs(
    subnet_ids=subnet_ids,
    security_group_ids=[security_group_id],
    instance_class=instance.name,
    engine_version=engine_version,
    multi_az=multi_az,
    primary_zone=None if multi_az else primary_zone,
    replica_zones=replica_zones,
    primary_parameters=primary_settings,
    replica_parameters=replica_settings,
    deletion_protection=protect,
    protect=protect,
    tags=tags,
))

# The same tuned set as a standalone group, for an instance this program does not manage: restore
# a snapshot into it for a backup drill and it starts with the primary's tuning.
restore_drill = TrackingParameterGroup("tracking-db-restore-drill", ParameterGroupArgs(
    family=f"postgres{engine_major}", parameters=primary_settings,
    description="MLflow tracking restore drills: the primary's tuning", tags=tags))

pulumi.export("endpoint", database.endpoint)                     # postgresql://<endpoint>:5432/mlflow
pulumi.export("replica_endpoints", pulumi.Output.all(*database.replica_endpoints))
pulumi.export("secret_arn", database.secret_arn)                 # the servers' application role (mlflow_app)
pulumi.export("master_secret_arn", database.master_secret_arn)   # the master user: migrations only
pulumi.export("primary_parameter_group", database.primary_parameter_group.name)
pulumi.export("replica_parameter_group", database.replica_parameter_group.name)
pulumi.export("restore_drill_parameter_group", restore_drill.name)
