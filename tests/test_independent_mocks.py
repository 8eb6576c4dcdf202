"""The resource graphs of `prod`, `prod` with `tracking.auth: basic`, `prod` with
`database.read_replicas: 3` and `prod` on Aurora, rendered under mocks written here (not infra.aws.mocks), checked
against the platform's constraints in plain Python:

1. no read replica of an instance whose master password RDS manages (and the source has a password);
2. no alarm topic on `alias/aws/sns`; an encrypted topic's key is in the graph and lets CloudWatch use it;
3. with basic-auth, every server container gets the Flask secret key and the admin password as ECS
   secrets from a Secrets Manager secret of the graph, and nothing points MLflow at SQLite;
4. every replica is read by a UI container, and each UI task reads exactly one replica;
5. `prod` with `database.engine: aurora`: an encrypted Aurora PostgreSQL cluster with a writer and
   readers, reader autoscaling on rds:cluster:ReadReplicaCount, the UI reading the cluster's reader
   endpoint and the API writing through its writer endpoint;
6. `prod` with `database.disaster_recovery: global`: a Global Database made from that cluster and a
   secondary cluster in the second region (a provider of that region), encrypted with a key there,
   with no master user or password of its own, and an instance in it.

The mocks decide every computed value (ids, ARNs, addresses) so that each reference can be traced
back to the one resource it came from.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra import MlflowTracking, MlflowTrackingArgs
from infra.endpoints import AUTH_SECRET_KEYS
from infra.planning.plan import plan as make_plan
from infra.spec import load_environment

ROOT = Path(__file__).resolve().parent.parent
STACKS = ROOT / "stacks"
PROJECT = "mlflow-tracking"

ACCOUNT = "210987654321"
REGION = "us-east-1"
DB_PORT = 5432

RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
SCALING_TARGET = "aws:appautoscaling/target:Target"
GLOBAL_CLUSTER = "aws:rds/globalCluster:GlobalCluster"
PROVIDER = "pulumi:providers:aws"
SNS_TOPIC = "aws:sns/topic:Topic"
KMS_KEY = "aws:kms/key:Key"
KMS_ALIAS = "aws:kms/alias:Alias"
SM_SECRET = "aws:secretsmanager/secret:Secret"
SM_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"

SERVER_CONTAINER = "mlflow"
FLASK_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
ADMIN_PASSWORD_ENV = "AUTH_ADMIN_PASSWORD"
REPLICA_HOST_ENV = "DB_REPLICA_HOST"  # infra/aws/rendering.py: database_environment

# variant id -> what the variant's file sets on top of stacks/prod.yaml (None: prod itself)
VARIANTS: dict[str, str | None] = {
    "prod": None,
    "prod-auth-basic": "tracking:\n  auth: basic\n",
    "prod-3-replicas": "database:\n  read_replicas: 3\n",
    "prod-aurora": "database:\n  engine: aurora\n",
    "prod-global": ("database:\n  engine: aurora\n  disaster_recovery: global\n  secondary_region: us-west-2\n"
                    "  secondary_placement:\n    vpc_id: vpc-0a0b0c0d0e0f01234\n    cidr: 10.90.0.0/16\n    subnets:\n"
                    "      - {id: subnet-0a0b0c0d0e0f05678, availability_zone: us-west-2a}\n"
                    "      - {id: subnet-0a0b0c0d0e0f09abc, availability_zone: us-west-2c}\n"),
}
AURORA = "prod-aurora"
GLOBAL = "prod-global"


# ---------------------------------------------------------------------------------------------------
# the mocks
# ---------------------------------------------------------------------------------------------------

def _tag(*parts: str, size: int = 8) -> str:
    """A short deterministic hex tag of the parts (stands in for AWS's random suffixes)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:size]


# Pulumi's wire form of a secret value (the mock monitor hands secret inputs over still wrapped):
# {SIG_KEY: SECRET_SIG, "value": ...}, the constants of the Pulumi property-value protocol
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def unwrap_secrets(value: Any) -> Any:
    """The plain value of an input, secrets revealed (the checks read passwords and secret strings)."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return unwrap_secrets(value.get("value"))
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]
    id: str
    state: dict[str, Any]
    provider: str = ""   # the provider reference (`urn::id`) a resource of another region names


@dataclass
class IndependentMocks(pulumi.runtime.Mocks):
    """Records every resource and answers with plausible, traceable state: each id and ARN is
    distinct per (type, name), and each value the program reads back is one a reference can be
    traced from (e.g. an RDS instance's `address` is `<name>.independent.rds.test`)."""

    resources: list[Recorded] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    unknown_calls: list[str] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        typ, name = args.typ, args.name
        inputs = dict(args.inputs)
        module = typ.split(":")[1]                       # e.g. "rds/instance"
        service = module.split("/")[0]                   # e.g. "rds"
        kind = typ.split(":")[-1].lower()                # e.g. "instance"
        tag = _tag(typ, name)
        rid = f"{kind}-{tag}-{name}"
        state: dict[str, Any] = {**inputs, "arn": f"arn:aws:{service}:{REGION}:{ACCOUNT}:{kind}/{name}-{tag}"}

        if typ == RDS_INSTANCE:
            identifier = inputs.get("identifier") or f"db-{tag}-{name}"
            address = f"{name}.independent.rds.test"
            state.update(identifier=identifier, address=address, port=DB_PORT, endpoint=f"{address}:{DB_PORT}",
                         arn=f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{identifier}", resourceId=f"db-{tag.upper()}")
            rid = identifier
        elif typ == RDS_CLUSTER:
            identifier = inputs.get("clusterIdentifier") or f"cl-{tag}-{name}"
            state.update(clusterIdentifier=identifier, endpoint=f"{name}.cluster.independent.rds.test",
                         readerEndpoint=f"{name}.cluster-ro.independent.rds.test", port=DB_PORT,
                         arn=f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:{identifier}")
            rid = identifier
        elif typ == CLUSTER_INSTANCE:
            identifier = inputs.get("identifier") or f"db-{tag}-{name}"
            state.update(identifier=identifier, endpoint=f"{name}.instance.independent.rds.test", port=DB_PORT,
                         arn=f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{identifier}")
            rid = identifier
        elif typ == "aws:rds/clusterParameterGroup:ClusterParameterGroup":
            state.setdefault("name", f"{name}-{tag}")
        elif typ == "aws:rds/proxy:Proxy":
            state.update(endpoint=f"{name}.proxy.independent.rds.test",
                         arn=f"arn:aws:rds:{REGION}:{ACCOUNT}:db-proxy:prx-{tag}", name=inputs.get("name") or f"{name}-{tag}")
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            suffix = f"app/{name}-{tag[:6]}/{tag}"
            state.update(dnsName=f"{name}.independent.elb.test", arnSuffix=suffix,
                         arn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/{suffix}", zoneId="Z0INDEPENDENT")
            rid = state["arn"]
        elif typ == "aws:lb/targetGroup:TargetGroup":
            suffix = f"targetgroup/{name[:20]}-{tag[:6]}/{tag}"
            state.update(arnSuffix=suffix, arn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:{suffix}")
            rid = state["arn"]
        elif typ == "aws:ecr/repository:Repository":
            repo = inputs.get("name") or f"{name}-{tag}"
            state.update(name=repo, repositoryUrl=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repo}",
                         arn=f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{repo}")
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state.update(latestVersion=1, defaultVersion=1)
            rid = f"lt-{tag}"
        elif typ == SM_SECRET:
            # AWS appends six random characters to a secret's name in its ARN; the id is the ARN
            secret_name = inputs.get("name") or f"{name}-{tag[:4]}"
            state.update(name=secret_name, arn=f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret_name}-{tag[:6]}")
            rid = state["arn"]
        elif typ == SM_VERSION:
            # echo the inputs (secretString is read back); the version's ARN is its secret's
            secret = next((r for r in self.resources if r.typ == SM_SECRET and inputs.get("secretId") in (r.id, r.state["arn"])), None)
            version_id = f"v-{tag}"
            state.update(arn=secret.state["arn"] if secret else f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:unknown-{tag}",
                         versionId=version_id, versionStages=["AWSCURRENT"])
            rid = f"{state['arn']}|{version_id}"
        elif typ == KMS_KEY:
            key_id = f"{tag}-0000-4000-8000-{_tag(name, 'key', size=12)}"
            state.update(keyId=key_id, arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}")
            rid = key_id
        elif typ == SNS_TOPIC:
            topic = inputs.get("name") or f"{name}-{tag}"
            state.update(name=topic, arn=f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic}")
            rid = state["arn"]
        elif typ == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or f"{name}-{tag}"
            state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}", bucketRegionalDomainName=f"{bucket}.s3.{REGION}.amazonaws.com")
            rid = bucket
        elif typ == "aws:iam/role:Role":
            role = inputs.get("name") or f"{name}-{tag}"
            state.update(name=role, arn=f"arn:aws:iam::{ACCOUNT}:role/{role}", uniqueId=f"AROA{tag.upper()}")
            rid = role
        elif typ == "aws:ecs/cluster:Cluster":
            cluster = inputs.get("name") or f"{name}-{tag}"
            state.update(name=cluster, arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}")
            rid = state["arn"]
        elif typ == "aws:ecs/service:Service":
            svc = inputs.get("name") or f"{name}-{tag}"
            state.update(name=svc, arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{svc}")
            rid = state["arn"]
        elif typ == TASK_DEFINITION:
            family = inputs.get("family") or name
            state.update(revision=1, arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:1",
                         arnWithoutRevision=f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}")
            rid = family
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            group = inputs.get("name") or f"{name}-{tag}"
            state.update(name=group, arn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}")
            rid = group
        elif typ == "aws:ec2/securityGroup:SecurityGroup":
            rid = f"sg-{tag}"
        elif typ == "aws:ec2/vpc:Vpc":
            rid = f"vpc-{tag}"
        elif typ == "aws:ec2/subnet:Subnet":
            rid = f"subnet-{tag}"
        elif typ == "aws:rds/parameterGroup:ParameterGroup":
            state.setdefault("name", f"{name}-{tag}")
        elif typ == "aws:rds/subnetGroup:SubnetGroup":
            state.setdefault("name", f"{name}-{tag}")
        elif typ == GLOBAL_CLUSTER:
            identifier = inputs.get("globalClusterIdentifier") or f"gc-{tag}-{name}"
            state.update(globalClusterIdentifier=identifier, arn=f"arn:aws:rds::{ACCOUNT}:global-cluster:{identifier}")
            rid = identifier
        self.resources.append(Recorded(typ, name, unwrap_secrets(inputs), rid, state, args.provider or ""))
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args.token)
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": REGION, "region": REGION, "id": REGION, "description": "US East (N. Virginia)",
                    "endpoint": f"ec2.{REGION}.amazonaws.com"}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/independent", "id": ACCOUNT,
                    "userId": "AIDAINDEPENDENT"}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws", "reverseDnsPrefix": "com.amazonaws"}
        self.unknown_calls.append(args.token)
        return {}


# ---------------------------------------------------------------------------------------------------
# rendering: each variant once per module
# ---------------------------------------------------------------------------------------------------

@dataclass
class Graph:
    variant: str
    spec: Any
    mocks: IndependentMocks

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.mocks.resources if r.typ == typ]

    def task_definitions(self) -> list[tuple[Recorded, list[dict]]]:
        return [(t, json.loads(t.inputs["containerDefinitions"])) for t in self.of_type(TASK_DEFINITION)]


def variant_file(variant: str, directory: Path) -> Path:
    """stacks/prod.yaml itself, or a file named prod.yaml (so the environment stays `prod`) that
    `extends` stacks/prod.yaml and sets the variant's keys."""
    overlay = VARIANTS[variant]
    if overlay is None:
        return STACKS / "prod.yaml"
    folder = directory / variant
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "prod.yaml"
    path.write_text(f"extends: {STACKS / 'prod.yaml'}\n{overlay}")
    return path


def render(spec) -> IndependentMocks:
    """Build MlflowTracking as stacks/__main__.py does, under IndependentMocks."""
    mocks = IndependentMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=spec.name, preview=False)

    @pulumi.runtime.test
    def build():
        tracking = MlflowTracking(f"mlflow-{spec.name}", MlflowTrackingArgs(spec=spec))
        return pulumi.Output.all(tracking.tracking_uri, tracking.ui_url, tracking.primary_endpoint, tracking.replica_endpoints,
                                 tracking.client_security_group_id, tracking.artifact_bucket, tracking.image_repository)

    build()
    return mocks


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("independent-variants")
    cache: dict[str, Graph] = {}

    def get(variant: str) -> Graph:
        if variant not in cache:
            path = variant_file(variant, directory)
            spec = load_environment(path, path.parent)
            cache[variant] = Graph(variant, spec, render(spec))
        return cache[variant]

    return get


ALL = pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in (AURORA, GLOBAL)])  # the RDS graphs


# ---------------------------------------------------------------------------------------------------
# the graph is not empty
# ---------------------------------------------------------------------------------------------------

@ALL
def test_mocks_saw_the_planned_database_instances(graphs, variant):
    g = graphs(variant)
    planned_replicas = make_plan(g.spec).database.replicas.count
    instances = g.of_type(RDS_INSTANCE)
    replicas = [r for r in instances if r.inputs.get("replicateSourceDb")]
    assert len(instances) == planned_replicas + 1, (
        f"{variant}: {len(instances)} rds instances ({[r.name for r in instances]}); expected {planned_replicas} replica(s) + 1 primary")
    assert len(replicas) == planned_replicas, f"{variant}: replicas {[r.name for r in replicas]}; expected {planned_replicas}"
    if variant == "prod-3-replicas":
        assert planned_replicas == 3, f"{variant}: the plan has {planned_replicas} replicas; expected the file's 3"
    else:
        assert planned_replicas >= 1, f"{variant}: the plan has no replicas, so the replica checks would pass vacuously"
    assert g.task_definitions(), f"{variant}: no ECS task definition rendered"
    assert g.of_type(SNS_TOPIC), f"{variant}: no SNS topic rendered"
    assert not g.mocks.unknown_calls, f"{variant}: the program invoked functions these mocks do not answer: {g.mocks.unknown_calls}"
    assert g.spec.tracking.auth == ("basic" if variant == "prod-auth-basic" else "none")


# ---------------------------------------------------------------------------------------------------
# 1. no replica of a managed-password source
# ---------------------------------------------------------------------------------------------------

@ALL
def test_no_replica_of_a_managed_password_source(graphs, variant):
    g = graphs(variant)
    instances = g.of_type(RDS_INSTANCE)
    for replica in (r for r in instances if r.inputs.get("replicateSourceDb")):
        ref = replica.inputs["replicateSourceDb"]
        sources = [i for i in instances if i is not replica and ref in (i.state["identifier"], i.state["arn"], i.id)]
        assert len(sources) == 1, (
            f"{variant}: {replica.name}: replicateSourceDb {ref!r} names {[s.name for s in sources]}; expected exactly one rds instance of the graph")
        source = sources[0]
        assert not source.inputs.get("manageMasterUserPassword"), (
            f"{variant}: {replica.name} replicates {source.name}, whose master password RDS manages (manageMasterUserPassword"
            f" {source.inputs.get('manageMasterUserPassword')!r}); RDS cannot make a replica of it")
        assert isinstance(source.inputs.get("password"), str) and source.inputs["password"], (
            f"{variant}: {source.name} (source of {replica.name}) has no password input; expected the stack's own master password")


# ---------------------------------------------------------------------------------------------------
# 2. no alarm topic on alias/aws/sns; the topic's key lets CloudWatch use it
# ---------------------------------------------------------------------------------------------------

def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _grants_cloudwatch(policy: dict, action: str) -> bool:
    for statement in _as_list(policy.get("Statement", [])):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal", {})
        services = _as_list(principal.get("Service", [])) if isinstance(principal, dict) else []
        if "cloudwatch.amazonaws.com" not in services:
            continue
        if any(fnmatch.fnmatchcase(action.lower(), str(pattern).lower()) for pattern in _as_list(statement.get("Action", []))):
            return True
    return False


def _key_of(g: Graph, ref: str) -> Recorded | None:
    keys = g.of_type(KMS_KEY)
    found = [k for k in keys if ref in (k.id, k.state["arn"], k.state["keyId"])]
    if not found:  # an alias of the graph's, pointing at one of its keys
        for alias in g.of_type(KMS_ALIAS):
            if ref in (alias.inputs.get("name"), alias.state["arn"], alias.id):
                target = alias.inputs.get("targetKeyId")
                found = [k for k in keys if target in (k.id, k.state["arn"], k.state["keyId"])]
    return found[0] if len(found) == 1 else None


@ALL
def test_no_alarm_topic_on_the_aws_managed_sns_key(graphs, variant):
    g = graphs(variant)
    for topic in g.of_type(SNS_TOPIC):
        ref = topic.inputs.get("kmsMasterKeyId")
        assert "alias/aws/sns" not in str(ref or ""), (
            f"{variant}: {topic.name}: kmsMasterKeyId {ref!r}; CloudWatch cannot publish alarms to a topic on alias/aws/sns")
        if not ref:
            continue
        key = _key_of(g, ref)
        assert key is not None, f"{variant}: {topic.name}: kmsMasterKeyId {ref!r} is no kms key of the graph"
        policy_text = key.inputs.get("policy")
        assert policy_text, f"{variant}: {key.name} (key of {topic.name}) has no policy; the default one does not let CloudWatch use it"
        policy = json.loads(policy_text)
        for action in ("kms:Decrypt", "kms:GenerateDataKey*"):
            assert _grants_cloudwatch(policy, action), (
                f"{variant}: {key.name} (key of {topic.name}): its policy does not allow cloudwatch.amazonaws.com {action}")


# ---------------------------------------------------------------------------------------------------
# 3. basic-auth: the secret key and admin password as ECS secrets, no SQLite auth store
# ---------------------------------------------------------------------------------------------------

@ALL
def test_server_containers_get_the_auth_secrets_and_no_sqlite(graphs, variant):
    g = graphs(variant)
    basic = g.spec.tracking.auth == "basic"
    secret_arns = {s.state["arn"]: s.name for s in g.of_type(SM_SECRET)}
    secret_values = [v.inputs.get("secretString") or "" for v in g.of_type(SM_VERSION)]
    passwords = [json.loads(text)[AUTH_SECRET_KEYS[ADMIN_PASSWORD_ENV]] for text in secret_values
                 if AUTH_SECRET_KEYS[ADMIN_PASSWORD_ENV] in json.loads(text or "{}")]
    if basic:
        assert passwords, f"{variant}: no secret version of the graph holds an admin password"
    auth_secret_used: dict[str, set[str]] = {}
    for task, containers in g.task_definitions():
        servers = [c for c in containers if c.get("name") == SERVER_CONTAINER]
        assert len(servers) == 1, f"{variant}: {task.name}: {len(servers)} containers named {SERVER_CONTAINER!r}; expected one"
        for container in containers:
            where = f"{variant}: {task.name} container {container.get('name')!r}"
            env = {e["name"]: e["value"] for e in container.get("environment", [])}
            for name, value in env.items():
                assert "sqlite" not in str(value).lower(), f"{where}: environment {name}={value!r} mentions SQLite"
            assert not any("sqlite" in str(part).lower() for part in container.get("command", [])), (
                f"{where}: command {container.get('command')} mentions SQLite")
            for name in (*AUTH_SECRET_KEYS, "DB_PASSWORD"):
                assert name not in env, f"{where}: {name} is in plain environment; expected an ECS secret"
            plain = json.dumps([container.get("environment", []), container.get("command", [])])
            for password in passwords:
                assert password not in plain, f"{where}: the admin password appears in plain environment or command"
        server = servers[0]
        where = f"{variant}: {task.name} container {SERVER_CONTAINER!r}"
        injected = {s["name"]: s["valueFrom"] for s in server.get("secrets", [])}
        if not basic:
            present = sorted(set(injected) & set(AUTH_SECRET_KEYS))
            assert not present, f"{where}: auth secrets {present} injected with tracking.auth none"
            continue
        for name in (FLASK_KEY_ENV, ADMIN_PASSWORD_ENV):
            assert name in injected, f"{where}: no ECS secret {name} (secrets: {sorted(injected)})"
            value_from = injected[name]
            owners = [arn for arn in secret_arns if value_from.startswith(arn + ":")]
            assert owners, f"{where}: {name} valueFrom {value_from!r} is not from a secretsmanager Secret of the graph"
            assert value_from == f"{owners[0]}:{AUTH_SECRET_KEYS[name]}::", (
                f"{where}: {name} valueFrom {value_from!r}; expected JSON key {AUTH_SECRET_KEYS[name]!r} of {secret_arns[owners[0]]}")
            auth_secret_used.setdefault(name, set()).add(owners[0])
    for name, used in auth_secret_used.items():
        assert len(used) == 1, f"{variant}: {name} comes from {sorted(secret_arns[a] for a in used)}; expected one secret shared by every server"


# ---------------------------------------------------------------------------------------------------
# 4. every replica is read by a UI container; each UI task reads one replica
# ---------------------------------------------------------------------------------------------------

def _is_ui(task: Recorded) -> bool:
    return "-ui" in (task.inputs.get("family") or "") or "-ui" in task.name


@ALL
def test_every_replica_is_read_by_a_ui_container(graphs, variant):
    g = graphs(variant)
    replicas = {r.state["address"]: r.name for r in g.of_type(RDS_INSTANCE) if r.inputs.get("replicateSourceDb")}
    ui_tasks = [(t, cs) for t, cs in g.task_definitions() if _is_ui(t)]
    assert ui_tasks, f"{variant}: no UI task definition (family containing '-ui')"
    read: dict[str, list[str]] = {}
    for task, containers in ui_tasks:
        hosts = [(c.get("name"), e["value"]) for c in containers for e in c.get("environment", []) if e["name"] == REPLICA_HOST_ENV]
        unknown = [h for _, h in hosts if h not in replicas]
        assert not unknown, f"{variant}: {task.name}: {REPLICA_HOST_ENV} {unknown} is no replica of the graph ({sorted(replicas)})"
        assert len({h for _, h in hosts}) == 1, (
            f"{variant}: {task.name} reads replicas {sorted({h for _, h in hosts})}; expected exactly one")
        for container, host in hosts:
            read.setdefault(host, []).append(f"{task.name}/{container}")
    unread = sorted(name for address, name in replicas.items() if address not in read)
    assert not unread, (
        f"{variant}: replicas {unread} are read by no UI container (UI tasks {[t.name for t, _ in ui_tasks]} read"
        f" {', '.join(f'{replicas[h]} ({h}) in {where}' for h, where in sorted(read.items()))})")


# ---------------------------------------------------------------------------------------------------
# 5. prod on Aurora: an encrypted cluster, a writer and readers, reader autoscaling, the UI on the
#    reader endpoint and the API on the writer's
# ---------------------------------------------------------------------------------------------------

def _containers(g: Graph, family_part: str) -> list[dict]:
    return [c for task, containers in g.task_definitions() if family_part in task.name for c in containers]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("environment", [])}


def test_aurora_prod_is_an_encrypted_cluster_of_a_writer_and_readers(graphs):
    g = graphs(AURORA)
    assert not g.of_type(RDS_INSTANCE), f"{AURORA}: RDS instances {[r.name for r in g.of_type(RDS_INSTANCE)]} beside the cluster"
    clusters = g.of_type(RDS_CLUSTER)
    assert len(clusters) == 1, f"{AURORA}: {len(clusters)} clusters; expected one"
    cluster = clusters[0]
    assert cluster.inputs["engine"] == "aurora-postgresql" and cluster.inputs["storageEncrypted"] is True
    keys = {k.state["arn"] for k in g.of_type(KMS_KEY)}
    assert cluster.inputs.get("kmsKeyId") in keys, f"{AURORA}: the cluster's key {cluster.inputs.get('kmsKeyId')!r} is not a key of the graph"
    members = [i for i in g.of_type(CLUSTER_INSTANCE) if i.inputs.get("clusterIdentifier") in (cluster.id, cluster.state["clusterIdentifier"])]
    assert len(members) >= 2, f"{AURORA}: {len(members)} instances in the cluster; expected a writer and at least one reader"
    assert len(members) == len(g.of_type(CLUSTER_INSTANCE)), f"{AURORA}: an instance of no cluster of the graph"


def test_aurora_readers_autoscale_on_the_clusters_replica_count(graphs):
    g = graphs(AURORA)
    cluster = g.of_type(RDS_CLUSTER)[0]
    targets = [t for t in g.of_type(SCALING_TARGET) if t.inputs.get("serviceNamespace") == "rds"]
    assert len(targets) == 1, f"{AURORA}: {len(targets)} RDS scaling targets; expected one"
    target = targets[0].inputs
    assert (target["serviceNamespace"], target["scalableDimension"]) == ("rds", "rds:cluster:ReadReplicaCount")
    assert target["resourceId"] == f"cluster:{cluster.state['clusterIdentifier']}"
    assert target["maxCapacity"] > target["minCapacity"] >= 1


def test_aurora_ui_reads_the_reader_endpoint_and_the_api_writes_the_writer_endpoint(graphs):
    g = graphs(AURORA)
    cluster = g.of_type(RDS_CLUSTER)[0].state
    ui = [c for c in _containers(g, "-ui") if c.get("name") == SERVER_CONTAINER]
    api = [c for c in _containers(g, "-api") if c.get("name") == SERVER_CONTAINER]
    assert ui and api, f"{AURORA}: server containers ui {len(ui)}, api {len(api)}"
    for container in ui:
        env = _env(container)
        assert env.get(REPLICA_HOST_ENV) == cluster["readerEndpoint"], (
            f"{AURORA}: a UI server reads {env.get(REPLICA_HOST_ENV)!r}; expected the cluster's reader endpoint {cluster['readerEndpoint']!r}")
        assert env.get("DB_HOST") == cluster["endpoint"], f"{AURORA}: a UI server's writes go to {env.get('DB_HOST')!r}"
    for container in api:
        env = _env(container)
        assert env.get("DB_HOST") == cluster["endpoint"], (
            f"{AURORA}: an API server writes to {env.get('DB_HOST')!r}; expected the cluster's writer endpoint {cluster['endpoint']!r}")
        assert REPLICA_HOST_ENV not in env, f"{AURORA}: an API server reads a replica"
    migrate = [_env(c) for c in _containers(g, "-api") if c.get("name") != SERVER_CONTAINER and "DB_CLUSTER_ID" in _env(c)]
    assert migrate and all(e["DB_CLUSTER_ID"] == cluster["clusterIdentifier"] for e in migrate), (
        f"{AURORA}: the migrate step does not snapshot the cluster before an upgrade")


# ---------------------------------------------------------------------------------------------------
# 6. prod on an Aurora Global Database: the secondary cluster in the second region
# ---------------------------------------------------------------------------------------------------

def test_global_database_follows_the_primary_with_an_encrypted_secondary_in_the_second_region(graphs):
    g = graphs(GLOBAL)
    region_of = {r.id: r.inputs.get("region") for r in g.of_type(PROVIDER)}

    def region(resource: Recorded) -> str:
        return region_of.get(resource.provider.split("::")[-1], REGION) if resource.provider else REGION

    assert "us-west-2" in region_of.values(), f"{GLOBAL}: no provider for the second region ({region_of})"
    clusters = g.of_type(RDS_CLUSTER)
    primary = [c for c in clusters if "globalClusterIdentifier" not in c.inputs]
    secondary = [c for c in clusters if "globalClusterIdentifier" in c.inputs]
    assert len(primary) == 1 and len(secondary) == 1, f"{GLOBAL}: clusters {[c.name for c in clusters]}"
    primary, secondary = primary[0], secondary[0]
    (glob,) = g.of_type(GLOBAL_CLUSTER)
    assert glob.inputs["sourceDbClusterIdentifier"] == primary.state["arn"], f"{GLOBAL}: the global cluster is not made from the primary"
    assert secondary.inputs["globalClusterIdentifier"] == glob.id, f"{GLOBAL}: the secondary joins {secondary.inputs['globalClusterIdentifier']!r}"
    assert (region(primary), region(secondary)) == (REGION, "us-west-2"), f"{GLOBAL}: clusters in {region(primary)}, {region(secondary)}"
    assert not {"masterUsername", "masterPassword", "manageMasterUserPassword"} & set(secondary.inputs), (
        f"{GLOBAL}: the secondary names a master user or password (AWS refuses it: the primary's replicate)")
    assert not primary.inputs.get("manageMasterUserPassword"), f"{GLOBAL}: a Global Database member manages its master password"
    keys = {k.state["arn"]: k for k in g.of_type(KMS_KEY)}
    assert secondary.inputs["storageEncrypted"] is True and secondary.inputs.get("kmsKeyId") in keys
    assert region(keys[secondary.inputs["kmsKeyId"]]) == "us-west-2", f"{GLOBAL}: the secondary's key is not of its region"
    members = [i for i in g.of_type(CLUSTER_INSTANCE) if i.inputs.get("clusterIdentifier") in (secondary.id, secondary.state["clusterIdentifier"])]
    assert len(members) == 1 and region(members[0]) == "us-west-2" and members[0].inputs["instanceClass"].startswith("db.r")
