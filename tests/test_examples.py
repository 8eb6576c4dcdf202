"""examples/*: each folder with a Pulumi.yaml is a Pulumi program that runs from its own folder.

Every example is run the way `cd examples/X && pulumi up` would run it, under Pulumi's mocks (as
tests/test_pulumi_program.py runs stacks/__main__.py): its exports must all resolve to something,
and what it declares must be what its README paragraph says it builds."""

from __future__ import annotations

import ipaddress
import json
import runpy
from pathlib import Path

import pulumi
import pytest
import yaml

from helpers import ROOT
from infra.aws.mocks import RecordingMocks
from infra.planning import catalogue
from infra.planning.parameters import PAGE
from infra.planning.plan import subnet_cidrs

EXAMPLES_DIR = ROOT / "examples"
EXAMPLES = sorted(p.parent for p in EXAMPLES_DIR.glob("*/Pulumi.yaml"))
IDS = [p.name for p in EXAMPLES]

INSTANCE = "aws:rds/instance:Instance"
PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
ROUTE = "aws:ec2/route:Route"
SUBNET = "aws:ec2/subnet:Subnet"


def project(folder: Path) -> dict:
    return yaml.safe_load((folder / "Pulumi.yaml").read_text(encoding="utf-8"))


def run_example(folder: Path, monkeypatch, config: dict | None = None, cwd: Path | None = None):
    """Run examples/<folder>/__main__.py under the mocks with the working directory in its folder
    (or `cwd`); return the exports, their resolved values and the mocks."""
    monkeypatch.chdir(cwd or folder)
    exports: dict = {}
    resolved: dict = {}
    monkeypatch.setattr(pulumi, "export", lambda name, value: exports.__setitem__(name, value))
    name = project(folder)["name"]
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=name, stack="dev", preview=False)
    # unqualified keys are the project's own (what `pulumi config set key value` writes)
    pulumi.runtime.set_all_config({"aws:region": "us-east-1",
                                   **{k if ":" in k else f"{name}:{k}": v for k, v in (config or {}).items()}})
    script = "__main__.py" if cwd is None else str(folder / "__main__.py")

    @pulumi.runtime.test
    def program():
        runpy.run_path(script, run_name="__main__")
        keys = list(exports)
        return pulumi.Output.all(*[pulumi.Output.from_input(exports[k]) for k in keys]).apply(
            lambda values: resolved.update(zip(keys, values)))

    program()
    return exports, resolved, mocks


def empty_parts(value, where: str = "") -> list[str]:
    """Where in an export a value is missing: None, "", or an empty list or mapping."""
    if value is None or value == "" or (isinstance(value, (list, tuple, dict)) and not value):
        return [where or "(the value)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in empty_parts(v, f"{where}.{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in empty_parts(v, f"{where}[{i}]")]
    return []


def by_name(parameters: list[dict]) -> dict[str, dict]:
    return {p["name"]: p for p in parameters}


# --- every example ------------------------------------------------------------------------------

def test_the_examples_are_discovered():
    assert len(EXAMPLES) >= 3, f"examples with a Pulumi.yaml: {IDS}"
    assert {"complete", "database-only", "peered-vpc"} <= set(IDS)


@pytest.mark.parametrize("folder", EXAMPLES, ids=IDS)
def test_pulumi_yaml_is_a_python_project(folder):
    p = project(folder)
    assert isinstance(p.get("name"), str) and p["name"], "Pulumi.yaml: name is missing"
    runtime = p.get("runtime")
    runtime_name = runtime.get("name") if isinstance(runtime, dict) else runtime
    assert runtime_name == "python", f"Pulumi.yaml: runtime is {runtime!r}; expected python"
    main = folder / p.get("main", ".")
    assert (main / "__main__.py" if main.is_dir() else main).is_file(), f"{main}: no program"
    venv = (runtime.get("options") or {}).get("virtualenv") if isinstance(runtime, dict) else None
    if venv is not None:  # the repository's virtualenv, where mlflow-infra is installed
        assert (folder / venv).resolve() == (ROOT / ".venv").resolve()


def test_project_names_differ():
    names = [project(f)["name"] for f in EXAMPLES]
    assert len(set(names)) == len(names), names


@pytest.mark.parametrize("folder", EXAMPLES, ids=IDS)
def test_example_runs_from_its_folder_and_every_export_resolves(folder, monkeypatch):
    exports, resolved, mocks = run_example(folder, monkeypatch)
    assert exports, "no exports"
    assert set(resolved) == set(exports)
    for name, value in resolved.items():
        assert not empty_parts(value), f"export {name}: empty at {empty_parts(value)} ({value!r})"
    assert any(r.typ.startswith("aws:") for r in mocks.resources)


@pytest.mark.parametrize("folder", EXAMPLES, ids=IDS)
def test_example_does_not_depend_on_the_working_directory(folder, monkeypatch, tmp_path):
    """Files are found next to __main__.py, not in the directory `pulumi` was started from."""
    _, from_folder, mocks_folder = run_example(folder, monkeypatch)
    _, elsewhere, mocks_elsewhere = run_example(folder, monkeypatch, cwd=tmp_path)
    assert elsewhere == from_folder
    assert sorted((r.typ, r.name) for r in mocks_elsewhere.resources) == sorted((r.typ, r.name) for r in mocks_folder.resources)


@pytest.mark.parametrize("folder", EXAMPLES, ids=IDS)
def test_readme_has_a_paragraph_for_the_example(folder):
    readme = (EXAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    assert f"cd examples/{folder.name} && pulumi stack init dev" in readme


# --- complete -----------------------------------------------------------------------------------

COMPLETE = EXAMPLES_DIR / "complete"
COMPLETE_OUTPUTS = {"tracking_uri", "ui_url", "primary_endpoint", "replica_endpoints", "client_security_group_id",
                    "artifact_bucket", "image_repository", "plan_summary", "monthly_cost_usd"}


def test_complete_builds_the_platform_from_its_environment_file(monkeypatch):
    exports, resolved, mocks = run_example(COMPLETE, monkeypatch)
    component = mocks.one("mlflow-infra:index:MlflowTracking")
    assert component.name == "mlflow"
    for child in ("network:TrackingNetwork", "database:TrackingDatabase", "artifacts:ArtifactStore",
                  "service:TrackingService", "monitoring:TrackingMonitoring"):
        assert len(mocks.of_type(f"mlflow-infra:{child}")) == 1, child
    assert set(exports) == COMPLETE_OUTPUTS
    # the figures are those of examples/complete/environment.yaml
    environment = yaml.safe_load((COMPLETE / "environment.yaml").read_text(encoding="utf-8"))
    assert resolved["plan_summary"]["environment"] == environment["name"]
    assert resolved["plan_summary"]["tier"] == environment["tier"]
    assert mocks.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"] == environment["placement"]["new_vpc"]["cidr"]
    assert resolved["tracking_uri"].startswith("http://mlflow-svc-api")
    assert resolved["ui_url"].startswith("http://mlflow-svc-ui")
    assert resolved["monthly_cost_usd"] > 0
    replicas = [r for r in mocks.of_type(INSTANCE) if "replicateSourceDb" in r.inputs]
    assert len(resolved["replica_endpoints"]) == len(replicas) >= 1
    assert len(mocks.of_type(INSTANCE)) == len(replicas) + 1


def test_complete_refuses_a_region_other_than_the_files(monkeypatch):
    with pytest.raises(pulumi.RunError, match=r"aws:region: 'eu-west-1' is not allowed; expected 'us-east-1'"):
        run_example(COMPLETE, monkeypatch, {"aws:region": "eu-west-1"})


def test_complete_reads_the_environment_file_named_in_config(monkeypatch, tmp_path):
    text = (COMPLETE / "environment.yaml").read_text(encoding="utf-8")
    other = tmp_path / "other.yaml"
    other.write_text(text.replace("name: example", "name: other").replace("tier: staging", "tier: development"))
    _, resolved, _ = run_example(COMPLETE, monkeypatch, {"environmentFile": str(other)})
    assert (resolved["plan_summary"]["environment"], resolved["plan_summary"]["tier"]) == ("other", "development")


def test_complete_stops_on_a_missing_environment_file(monkeypatch):
    """environmentFile is relative to the example's folder; a bad file stops before any resource."""
    with pytest.raises(pulumi.RunError, match=r"missing\.yaml: file not found"):
        run_example(COMPLETE, monkeypatch, {"environmentFile": "missing.yaml"})


# --- database-only ------------------------------------------------------------------------------

DATABASE_ONLY = EXAMPLES_DIR / "database-only"


def parameter_groups(mocks) -> dict[str, dict]:
    return {r.name: r.inputs for r in mocks.of_type(PARAMETER_GROUP)}


def test_database_only_has_a_primary_two_replicas_and_tuned_groups(monkeypatch):
    _, resolved, mocks = run_example(DATABASE_ONLY, monkeypatch)
    assert not mocks.of_type("aws:ec2/vpc:Vpc"), "the database goes into an existing VPC"
    assert len(mocks.of_type("mlflow-infra:database:TrackingDatabase")) == 1
    assert len(mocks.of_type("mlflow-infra:database:TrackingParameterGroup")) == 1
    instances = mocks.of_type(INSTANCE)
    replicas = [r for r in instances if r.inputs.get("replicateSourceDb")]
    (primary,) = [r for r in instances if not r.inputs.get("replicateSourceDb")]
    assert len(replicas) == 2
    assert all(r.inputs["replicateSourceDb"] == primary.name for r in replicas)  # the mocks' identifier
    assert sorted(r.inputs["availabilityZone"] for r in replicas) == ["us-east-1b", "us-east-1c"]
    assert primary.inputs["multiAz"] is True
    assert primary.inputs["instanceClass"] == "db.r7g.large"
    assert primary.inputs["engineVersion"] == "17"
    assert primary.inputs["vpcSecurityGroupIds"] == ["sg-0123456789abcdef0"]
    assert len(mocks.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"]) >= 2

    groups = parameter_groups(mocks)
    assert len(groups) == 3  # primary, replicas, and the standalone restore-drill group
    memory = catalogue.instance_class("db.r7g.large").memory_bytes
    for name, group in groups.items():
        assert group["family"] == "postgres17", name
        params = by_name(group["parameters"])
        assert params["max_connections"] == {"name": "max_connections", "value": "400", "applyMethod": "pending-reboot"}, name
        assert params["shared_buffers"]["value"] == str(memory // 4 // PAGE), name
        assert params["shared_buffers"]["applyMethod"] == "pending-reboot", name
        assert {p["applyMethod"] for p in group["parameters"]} == {"immediate", "pending-reboot"}, name
    assert resolved["primary_parameter_group"] in groups
    assert primary.inputs["parameterGroupName"] == resolved["primary_parameter_group"]
    assert resolved["replica_parameter_group"] in groups
    assert {r.inputs["parameterGroupName"] for r in replicas} == {resolved["replica_parameter_group"]}
    assert resolved["endpoint"] == f"{primary.name}.abc123.us-east-1.rds.amazonaws.com"
    assert len(resolved["replica_endpoints"]) == 2
    # the stack's own secrets (not RDS-managed: replicas refuse a source that manages its password)
    assert resolved["secret_arn"] == "arn:aws:secretsmanager:us-east-1:123456789012:secret:tracking-db-app-AbCdEf"
    assert resolved["master_secret_arn"] == "arn:aws:secretsmanager:us-east-1:123456789012:secret:tracking-db-master-AbCdEf"
    assert "manageMasterUserPassword" not in primary.inputs and primary.inputs["password"]
    # a throwaway example by default: destroy works
    assert primary.inputs["deletionProtection"] is False


def test_database_only_follows_its_config(monkeypatch):
    config = {"subnetIds": json.dumps(["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"]),
              "securityGroupId": "sg-0bbbbbbbbbbbbbbb1", "instanceClass": "db.r7g.xlarge", "engineVersion": "16",
              "maxConnections": "250", "replicaZones": json.dumps(["us-east-1c", "us-east-1d"]), "protect": "true",
              "multiAz": "false", "primaryZone": "us-east-1f"}
    _, _, mocks = run_example(DATABASE_ONLY, monkeypatch, config)
    assert mocks.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"] == json.loads(config["subnetIds"])
    instances = mocks.of_type(INSTANCE)
    assert {r.inputs["instanceClass"] for r in instances} == {"db.r7g.xlarge"}
    assert {tuple(r.inputs["vpcSecurityGroupIds"]) for r in instances} == {("sg-0bbbbbbbbbbbbbbb1",)}
    assert sorted(r.inputs["availabilityZone"] for r in instances if r.inputs.get("replicateSourceDb")) == ["us-east-1c", "us-east-1d"]
    memory = catalogue.instance_class("db.r7g.xlarge").memory_bytes
    for name, group in parameter_groups(mocks).items():
        assert group["family"] == "postgres16", name
        params = by_name(group["parameters"])
        assert params["max_connections"]["value"] == "250", name
        assert params["shared_buffers"]["value"] == str(memory // 4 // PAGE), name
    (primary,) = [r for r in instances if not r.inputs.get("replicateSourceDb")]
    assert primary.inputs["deletionProtection"] is True
    assert (primary.inputs["multiAz"], primary.inputs["availabilityZone"]) == (False, "us-east-1f")


def test_database_only_rejects_an_unknown_class_before_declaring_anything(monkeypatch):
    with pytest.raises(pulumi.RunError, match=r"instanceClass: 'db\.r7g\.huge' is not allowed"):
        run_example(DATABASE_ONLY, monkeypatch, {"instanceClass": "db.r7g.huge"})


# --- peered-vpc ---------------------------------------------------------------------------------

PEERED = EXAMPLES_DIR / "peered-vpc"


def test_peered_vpc_peers_with_routes_both_ways(monkeypatch):
    exports, resolved, mocks = run_example(PEERED, monkeypatch)
    vpc = mocks.one("aws:ec2/vpc:Vpc")
    new_cidr = vpc.inputs["cidrBlock"]
    peering = mocks.one("aws:ec2/vpcPeeringConnection:VpcPeeringConnection")
    assert peering.inputs["vpcId"] == f"{vpc.name}-id" == resolved["vpc_id"]
    assert peering.inputs["peerVpcId"] == "vpc-0123456789abcdef0"
    routes = mocks.of_type(ROUTE)
    assert {r.inputs["vpcPeeringConnectionId"] for r in routes} == {f"{peering.name}-id"}
    to_training = [r for r in routes if r.inputs["destinationCidrBlock"] == "10.10.0.0/16"]
    from_training = [r for r in routes if r.inputs["destinationCidrBlock"] == new_cidr]
    assert len(to_training) == 2  # one per private route table (per zone)
    assert [r.inputs["routeTableId"] for r in from_training] == ["rtb-0123456789abcdef0"]
    assert len(routes) == len(to_training) + len(from_training)

    private, _ = subnet_cidrs(new_cidr, 2)
    subnets = mocks.of_type(SUBNET)
    assert sorted(s.inputs["cidrBlock"] for s in subnets) == sorted(private)
    assert all(ipaddress.ip_network(s.inputs["cidrBlock"]).subnet_of(ipaddress.ip_network(new_cidr)) for s in subnets)
    assert sorted(s.inputs["availabilityZone"] for s in subnets) == ["us-east-1a", "us-east-1b"]
    assert len(resolved["private_subnet_ids"]) == 2
    assert not mocks.of_type("aws:ec2/natGateway:NatGateway")
    assert "public_subnet_ids" not in exports
    # the client group lives in the training VPC, so training compute can carry it
    clients = mocks.one("aws:ec2/securityGroup:SecurityGroup", "-clients")
    assert clients.inputs["vpcId"] == "vpc-0123456789abcdef0"
    assert resolved["client_security_group_id"] == f"{clients.name}-id"
    s3 = mocks.one("aws:ec2/vpcEndpoint:VpcEndpoint", "-s3")
    assert s3.inputs["serviceName"] == "com.amazonaws.us-east-1.s3"


def test_peered_vpc_with_nat_adds_public_subnets(monkeypatch):
    config = {"natGateway": "true", "vpcCidr": "10.80.0.0/20", "trainingCidr": "10.20.0.0/16",
              "availabilityZones": json.dumps(["us-east-1a", "us-east-1b", "us-east-1c"]),
              "trainingRouteTableIds": json.dumps(["rtb-0aaaaaaaaaaaaaaa1", "rtb-0aaaaaaaaaaaaaaa2"])}
    _, resolved, mocks = run_example(PEERED, monkeypatch, config)
    private, public = subnet_cidrs("10.80.0.0/20", 3)
    assert sorted(s.inputs["cidrBlock"] for s in mocks.of_type(SUBNET)) == sorted(private + public)
    assert len(mocks.of_type("aws:ec2/natGateway:NatGateway")) == 3
    assert len(resolved["public_subnet_ids"]) == 3
    from_training = [r for r in mocks.of_type(ROUTE) if r.inputs["destinationCidrBlock"] == "10.80.0.0/20"]
    assert sorted(r.inputs["routeTableId"] for r in from_training) == ["rtb-0aaaaaaaaaaaaaaa1", "rtb-0aaaaaaaaaaaaaaa2"]
    assert len([r for r in mocks.of_type(ROUTE) if r.inputs["destinationCidrBlock"] == "10.20.0.0/16"]) == 3


def test_peered_vpc_refuses_overlapping_ranges(monkeypatch):
    with pytest.raises(pulumi.RunError, match=r"vpcCidr: '10\.10\.16\.0/20' is not allowed; expected a range that does not overlap"):
        run_example(PEERED, monkeypatch, {"vpcCidr": "10.10.16.0/20"})
