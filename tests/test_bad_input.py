"""Bad environment files: exit code 2, one line per problem naming the file and the key, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from infra.cli import main
from helpers import ROOT, minimal

TRAINING_VPC = """
  training_vpc:
    vpc_id: vpc-0a1b2c3d4e5f60718
    cidr: 10.20.0.0/16
    subnets:
      - {id: subnet-0a1b2c3d4e5f60711, availability_zone: us-east-1a}
      - {id: subnet-0a1b2c3d4e5f60722, availability_zone: us-east-1b}
"""

# (case id, text appended to a valid staging file or a whole file, key named, fragment of the message)
# a Global Database secondary's placement in us-west-2 (us-east-1's pair); {b}: the second subnet's zone
SECONDARY = """  secondary_placement:
    vpc_id: vpc-0b2c3d4e5f6a7b8c9
    cidr: 10.60.0.0/16
    subnets:
      - {{id: subnet-0aa11bb22cc33dd44, availability_zone: us-west-2a}}
      - {{id: subnet-0ee55ff66aa77bb88, availability_zone: us-west-2{b}}}
"""

CASES = [
    ("replicas negative", "database:\n  read_replicas: -1\n", "database.read_replicas", "-1 is not allowed; expected an integer from 0 to 15"),
    ("replicas too many", "database:\n  read_replicas: 16\n", "database.read_replicas", "16 is not allowed; expected an integer from 0 to 15"),
    ("typo with suggestion", "database:\n  read_replica: 2\n", "database.read_replica", "unknown key; did you mean 'read_replicas'?"),
    ("unknown section", "worklaod:\n  runs_per_day: 3\n", "worklaod", "did you mean 'workload'?"),
    ("text for a number", "workload:\n  metrics_per_call: ten\n", "workload.metrics_per_call", "'ten' is not allowed; expected an integer from 1 to 1000"),
    ("over log_batch limit", "workload:\n  metrics_per_call: 1001\n", "workload.metrics_per_call", "expected an integer from 1 to 1000"),
    ("boolean for integer", "workload:\n  concurrent_ui_users: true\n", "workload.concurrent_ui_users", "true is not allowed; expected an integer"),
    ("text for boolean", "database:\n  multi_az: 'yes'\n", "database.multi_az", "'yes' is not allowed; expected true or false"),
    ("unknown class", "database:\n  instance_class: db.r7g.huge\n", "database.instance_class", "'db.r7g.huge' is not allowed; did you mean"),
    ("old engine", "database:\n  engine_version: '12'\n", "database.engine_version", "expected a supported RDS PostgreSQL major version"),
    ("engine as number", "database:\n  engine_version: 16.4\n", "database.engine_version", "expected text (quote it in YAML)"),
    ("unknown region", "region: us-east-9\n", "region", "'us-east-9' is not allowed"),
    ("proxy mode", "database:\n  rds_proxy: maybe\n", "database.rds_proxy", "expected one of 'auto', 'on' or 'off'"),
    ("compute kind", "tracking:\n  compute: lambda\n", "tracking.compute", "expected one of 'ecs' or 'ec2'"),
    ("fargate size", "tracking:\n  api: {vcpu: 3}\n", "tracking.api.vcpu", "expected a Fargate task size"),
    ("fargate memory", "tracking:\n  api: {vcpu: 1, memory_gib: 16}\n", "tracking.api.memory_gib", "expected a Fargate size from 2 to 8 GiB"),
    ("public ui without cert", "tracking:\n  auth: basic\n  ui: {internet_facing: true}\n", "tracking.ui.certificate_arn", "expected an ACM certificate ARN"),
    ("public ui without auth", "tracking:\n  ui: {internet_facing: true, certificate_arn: 'arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-aaaa-bbbb-cccc-0123456789ab'}\n", "tracking.ui.internet_facing", "true is not allowed while tracking.auth is 'none'"),
    ("mlflow too old", "tracking:\n  mlflow_version: '3.10.0'\n", "tracking.mlflow_version", "expected 3.13.0 or newer"),
    ("min above max", "tracking:\n  api: {min_count: 5, max_count: 2}\n", "tracking.api.max_count", "expected at least tracking.api.min_count (5)"),
    ("az of another region", "placement:\n  new_vpc: {cidr: 10.60.0.0/20, availability_zones: [eu-west-1a, us-east-1b]}\n", "placement.new_vpc.availability_zones[0]", "expected a zone of region us-east-1"),
    ("overlapping cidrs", "placement:" + TRAINING_VPC + "  new_vpc: {cidr: 10.20.16.0/20, availability_zones: [us-east-1a, us-east-1b]}\n", "placement.new_vpc.cidr", "does not overlap the training VPC"),
    ("bad subnet id", "placement:\n  tracking_vpc: training\n  new_vpc: null\n  training_vpc:\n    vpc_id: vpc-0a1b2c3d4e5f60718\n    cidr: 10.20.0.0/16\n    subnets: [{id: sub-1, availability_zone: us-east-1a}]\n", "placement.training_vpc.subnets[0].id", "expected a subnet id"),
    ("two training subnets in one zone", "placement:\n  tracking_vpc: training\n  new_vpc: null\n  training_vpc:\n    vpc_id: vpc-0a1b2c3d4e5f60718\n    cidr: 10.20.0.0/16\n    subnets: [{id: subnet-0a1b2c3d4e5f60711, availability_zone: us-east-1a}, {id: subnet-0a1b2c3d4e5f60712, availability_zone: us-east-1b}, {id: subnet-0a1b2c3d4e5f60713, availability_zone: us-east-1a}]\n", "placement.training_vpc.subnets[2]", "subnet 'subnet-0a1b2c3d4e5f60711' is in us-east-1a already; expected one subnet per availability zone"),
    ("training vpc missing", "placement:\n  tracking_vpc: training\n  new_vpc: null\n", "placement.training_vpc", "is missing"),
    ("one training zone", "placement:\n  tracking_vpc: training\n  new_vpc: null\n  training_vpc:\n    vpc_id: vpc-0a1b2c3d4e5f60718\n    cidr: 10.20.0.0/16\n    subnets: [{id: subnet-0a1b2c3d4e5f60711, availability_zone: us-east-1a}]\n", "placement.training_vpc.subnets", "expected subnets in at least 2 zones"),
    ("public cidr", "placement:\n  new_vpc: {cidr: 8.8.0.0/16, availability_zones: [us-east-1a, us-east-1b]}\n", "placement.new_vpc.cidr", "expected a private range"),
    ("environment tag", "tags:\n  environment: other\n", "tags.environment", "expected it unset"),
    ("max storage below storage", "database:\n  storage_gib: 500\n  max_storage_gib: 100\n", "database.max_storage_gib", "expected at least database.storage_gib (500)"),
    ("engine kind", "database:\n  engine: postgres\n", "database.engine", "'postgres' is not allowed; expected one of 'auto', 'rds' or 'aurora'"),
    ("aurora engine version", "database:\n  engine: aurora\n  engine_version: '18'\n", "database.engine_version",
     "'18' is not allowed with database.engine aurora; expected an Aurora PostgreSQL major version (14, 15, 16, 17)"),
    ("aurora class", "database:\n  engine: aurora\n  instance_class: db.m7g.large\n", "database.instance_class",
     "'db.m7g.large' is not allowed with database.engine aurora; expected a class Aurora PostgreSQL offers (db.t4g.medium,"),
    ("aurora storage", "database:\n  engine: aurora\n  storage_gib: 500\n", "database.storage_gib",
     "500 is not allowed with database.engine aurora; expected the key left out (Aurora's storage grows by itself"),
    ("failover below aurora", "database:\n  multi_az: true\n  max_failover_seconds: 20\n", "database.max_failover_seconds",
     "20 is not allowed; expected at least 30"),
    ("failover on rds", "database:\n  engine: rds\n  multi_az: true\n  max_failover_seconds: 60\n", "database.max_failover_seconds",
     "60 is not allowed with database.engine rds; expected at least 120 (RDS Multi-AZ documents 60-120 s)"),
    ("second region is the first", "database:\n  disaster_recovery: backups\n  secondary_region: us-east-1\n", "database.secondary_region",
     "'us-east-1' is not allowed; expected a region other than the environment's region us-east-1"),
    ("unknown second region", "database:\n  disaster_recovery: backups\n  secondary_region: us-west-9\n", "database.secondary_region",
     "'us-west-9' is not allowed; did you mean"),
    ("second region without recovery", "database:\n  disaster_recovery: none\n  secondary_region: us-west-2\n", "database.secondary_region",
     "'us-west-2' is not allowed with database.disaster_recovery none"),
    ("global on rds", "database:\n  engine: rds\n  disaster_recovery: global\n", "database.disaster_recovery",
     "'global' is not allowed with database.engine rds"),
    ("global on a burstable class", "database:\n  disaster_recovery: global\n  instance_class: db.t4g.large\n", "database.instance_class",
     "'db.t4g.large' is not allowed with database.disaster_recovery global; expected a memory optimized class"),
    ("global without its secondary placement", "database:\n  disaster_recovery: global\n", "database.disaster_recovery",
     "'global' is not allowed without database.secondary_placement; expected vpc_id, cidr and subnets (two zones or more) of a VPC in us-west-2"),
    ("secondary placement without global", "database:\n  disaster_recovery: backups\n" + SECONDARY.format(b="b"),
     "database.secondary_placement", "is not allowed with database.disaster_recovery backups; expected the key left out"),
    ("secondary subnet in the first region", "database:\n  disaster_recovery: global\n" + SECONDARY.format(b="b").replace("us-west-2b", "us-east-1b"),
     "database.secondary_placement.subnets[1].availability_zone", "'us-east-1b' is not allowed; expected a zone of the second region us-west-2"),
    ("secondary subnets in one zone", "database:\n  disaster_recovery: global\n" + SECONDARY.format(b="a"),
     "database.secondary_placement.subnets", "cover 1 availability zone; expected subnets in at least 2 zones"),
    ("secondary placement public range", "database:\n  disaster_recovery: global\n" + SECONDARY.format(b="b").replace("10.60.0.0/16", "8.8.0.0/16"),
     "database.secondary_placement.cidr", "'8.8.0.0/16' is not allowed; expected a private range"),
    ("restore a cluster into rds", "database:\n  restore_from: arn:aws:rds:us-east-1:123456789012:cluster:mlflow-prod-db-secondary\n",
     "database.restore_from", "a DB cluster or cluster snapshot restores an Aurora cluster"),
    ("recovery mode", "database:\n  disaster_recovery: pilot-light\n", "database.disaster_recovery",
     "expected one of 'none', 'backups' or 'global'"),
    ("restore from another region", "database:\n  restore_from: arn:aws:rds:us-west-2:123456789012:auto-backup:ab-abc\n",
     "database.restore_from", "expected backups, a snapshot or a cluster in the environment's region us-east-1"),
    ("restore a cluster snapshot into rds", "database:\n  restore_from: arn:aws:rds:us-east-1:123456789012:cluster-snapshot:x\n",
     "database.restore_from", "a DB cluster or cluster snapshot restores an Aurora cluster"),
    ("restore aurora from rds backups", "database:\n  engine: aurora\n  restore_from: arn:aws:rds:us-east-1:123456789012:snapshot:x\n",
     "database.restore_from", "expected a DB cluster snapshot ARN"),
    ("restore time with a snapshot", "database:\n  restore_from: arn:aws:rds:us-east-1:123456789012:snapshot:x\n  restore_time: '2026-11-28T03:00:00Z'\n",
     "database.restore_time", "is not allowed without replicated automated backups"),
    ("restore from nonsense", "database:\n  restore_from: my-backup\n", "database.restore_from", "expected an RDS ARN"),
    ("failover in one zone", "database:\n  multi_az: false\n  max_failover_seconds: 60\n", "database.max_failover_seconds",
     "60 is not allowed with database.multi_az false; expected multi_az true"),
]


def _write_case(stack_dir, extra: str):
    return stack_dir("case.yaml", minimal() + extra)


def _run(capsys, path) -> tuple[int, list[str]]:
    code = main(["--stacks-dir", str(path.parent), "plan", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("extra,key,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_value_is_one_line_naming_file_and_key(stack_dir, capsys, extra, key, fragment):
    path = _write_case(stack_dir, extra)
    code, err = _run(capsys, path)
    assert code == 2
    matching = [line for line in err if line.startswith(f"{path}: {key}: ")]
    assert matching, err
    assert fragment in matching[0]


def test_relaxed_durability_refused_in_production(stack_dir, capsys):
    path = stack_dir("case.yaml", minimal(tier="production") + "database:\n  durability: relaxed\n")
    code, err = _run(capsys, path)
    assert code == 2
    assert any(line.startswith(f"{path}: database.durability: 'relaxed' is not allowed for tier production") for line in err)


def test_burstable_class_refused_in_production(stack_dir, capsys):
    path = stack_dir("case.yaml", minimal(tier="production") + "database:\n  instance_class: db.t4g.large\n")
    code, err = _run(capsys, path)
    assert code == 2
    assert any(line.startswith(f"{path}: database.instance_class: 'db.t4g.large' is not allowed for tier production") for line in err)


def test_proxy_off_when_the_budget_cannot_fit(stack_dir, capsys):
    extra = "database:\n  instance_class: db.t4g.medium\n  rds_proxy: 'off'\ntracking:\n  api: {max_count: 40}\n"
    path = stack_dir("case.yaml", minimal(tier="development") + extra)
    code, err = _run(capsys, path)
    assert code == 2
    line = next(l for l in err if l.startswith(f"{path}: database.rds_proxy: "))
    assert "'off' is not allowed for this plan" in line and "db.t4g.medium allows" in line


def test_same_fleet_with_proxy_auto_gets_a_proxy(stack_dir, capsys):
    extra = "database:\n  instance_class: db.t4g.medium\ntracking:\n  api: {max_count: 40}\n"
    path = stack_dir("case.yaml", minimal(tier="development") + extra)
    assert main(["plan", str(path), "--json"]) == 0
    assert '"rds_proxy": true' in capsys.readouterr().out


def test_retention_beyond_rds_storage(stack_dir, capsys):
    path = stack_dir("case.yaml", minimal(jobs=5000, calls=60, metrics=100, retention=3650))
    code, err = _run(capsys, path)
    assert code == 2
    assert any(l.startswith(f"{path}: workload.retention_days: 3650 is not allowed") or l.startswith(f"{path}: workload: needs") for l in err), err


def test_missing_section(stack_dir, capsys):
    path = stack_dir("case.yaml", "extends: base\ntier: staging\nplacement: {tracking_vpc: new, new_vpc: {cidr: 10.60.0.0/20, availability_zones: [us-east-1a, us-east-1b]}}\n")
    code, err = _run(capsys, path)
    assert code == 2
    assert err == [f"{path}: workload: is missing; expected this key to be set"]


def test_missing_owner_tag(stack_dir, capsys):
    body = minimal().replace("extends: base\n", "region: us-east-1\n")
    path = stack_dir("case.yaml", body)
    code, err = _run(capsys, path)
    assert code == 2
    assert err == [f"{path}: tags.owner: is missing; expected the team that owns this environment, e.g. owner: ml-platform"]


def test_extends_missing_file(stack_dir, capsys):
    path = stack_dir("case.yaml", minimal().replace("extends: base", "extends: basis"))
    code, err = _run(capsys, path)
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"{path}: extends: 'basis' is not allowed; expected an existing file")


def test_extends_cycle(stack_dir, capsys):
    stack_dir("a.yaml", "extends: b\n")
    stack_dir("b.yaml", "extends: a\n")
    path = stack_dir.dir / "a.yaml"
    code, err = _run(capsys, path)
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"{path}: extends: the chain") and "loops" in err[0]


def test_yaml_syntax_error_names_line(stack_dir, capsys):
    path = stack_dir("case.yaml", minimal() + "database:\n  read_replicas: [1\n")
    code, err = _run(capsys, path)
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"{path}: line ") and "expected valid YAML" in err[0]


def test_error_in_base_names_the_base_file(stack_dir, capsys):
    base = stack_dir.dir / "base.yaml"
    base.write_text(base.read_text().replace("rds_proxy: auto", "rds_proxy: sometimes"))
    path = stack_dir("case.yaml", minimal())
    code, err = _run(capsys, path)
    assert code == 2
    assert err[0].startswith(f"{base}: database.rds_proxy: 'sometimes' is not allowed")


def test_not_a_mapping(stack_dir, capsys):
    path = stack_dir("case.yaml", "- just\n- a list\n")
    code, err = _run(capsys, path)
    assert code == 2
    assert err == [f"{path}: the document is a list; expected a mapping of sections"]


def test_validate_reports_each_broken_file_and_exits_2(stack_dir, capsys):
    stack_dir("good.yaml", minimal())
    stack_dir("broken.yaml", minimal() + "database:\n  read_replicas: -1\n")
    code = main(["--stacks-dir", str(stack_dir.dir), "validate"])
    captured = capsys.readouterr()
    assert code == 2
    assert "good.yaml" in captured.out
    assert captured.err.strip() == f"{stack_dir.dir / 'broken.yaml'}: database.read_replicas: -1 is not allowed; expected an integer from 0 to 15"


def test_command_line_has_no_traceback(stack_dir):
    path = stack_dir("case.yaml", minimal() + "database:\n  read_replicas: -1\n")
    result = subprocess.run([sys.executable, "-m", "infra.cli", "plan", str(path)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == f"{path}: database.read_replicas: -1 is not allowed; expected an integer from 0 to 15"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("text", ["", "# qa: to be written\n\n# owner: ml-platform\n", "---\n"], ids=["empty", "comments only", "bare document marker"])
def test_empty_file_is_one_line(stack_dir, capsys, text):
    path = stack_dir("qa.yaml", text)
    code = main(["plan", str(path)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == "" and "Traceback" not in captured.err
    # base.yaml next to it sets region, so `extends: base` stands in for it
    assert captured.err.strip().splitlines() == [
        f"{path}: the file is empty; expected at least extends (or region), tier, workload and placement "
        "(most environment files start with 'extends: base')"]


def test_empty_file_without_a_base_lists_every_required_key(tmp_path, capsys):
    from infra.spec.model import EnvironmentSpec

    path = tmp_path / "qa.yaml"
    path.write_text("# nothing yet\n")
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{path}: the file is empty; expected at least tier, region, workload and placement")
    required = [k for k, f in EnvironmentSpec.model_fields.items() if f.is_required() and k != "name"]
    assert all(key in err[0] for key in required), (required, err)


def test_a_file_that_only_extends_still_names_each_missing_key(stack_dir, capsys):
    path = stack_dir("qa.yaml", "extends: base\n")
    assert main(["plan", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{path}: {key}: is missing; expected this key to be set" for key in ("tier", "workload", "placement")]
