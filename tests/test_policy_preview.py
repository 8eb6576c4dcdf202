"""The policy pack during `pulumi preview`, when inputs computed from outputs of resources not created
yet are unknown: no rule is skipped. A mandatory rule either checks what is known or reports the
unknown input it needs (fails closed), through the CrossGuard adapters exactly as pulumi_policy calls
them and through `mlflow-infra policy check --stack-json` on a `pulumi preview --json` document.

The preview stacks are the shipped environments rendered under Pulumi's mocks in preview mode, with a
provider that knows nothing it was not given: every id, ARN, physical name and value built from them
is unknown, as in a first preview (stricter than a real one, where autonamed names are known)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pulumi
import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.output import Unknown
from pulumi_policy import PolicyResource, PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs
from pulumi_policy import proxy as pp
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from helpers import environment
from infra import plan
from infra.aws.mocks import RecordingMocks
from infra.cli import main
from infra.policy import rules as R
from infra.policy.check import DOCUMENT_UNKNOWN, policy_config, resources_from_document, stack_resources
from infra.policy.pack import UNKNOWN_SENTINELS, _plain, _resource_validation, _stack_validation
from infra.policy.rules import CHECK_KNOWN, FAIL_CLOSED, RULES, UNKNOWN, PolicyConfig, Res, UnknownInput, evaluate

BY_NAME = {r.name: r for r in RULES}
OPTIONS = PolicyResourceOptions(False, [], False, [], None, [])


# ---------------------------------------------------------------------------------------------
# preview rendering and the shapes Pulumi hands the rules
# ---------------------------------------------------------------------------------------------

class PreviewMocks(RecordingMocks):
    """A provider in preview that returns only the inputs it was given: ids and every computed
    output stay unknown, and so does every input built from them."""

    def new_resource(self, args):
        self.resources.append(args)
        return "", dict(args.inputs)


def variant(env: str, compute: str | None = None):
    """The shipped environment; `compute` "ec2" runs the servers on EC2, "aurora" puts the database on
    Aurora, "global" on an Aurora Global Database (helpers.GLOBAL_DR)."""
    if compute in ("aurora", "global"):
        from helpers import GLOBAL_DR, variant as changed

        return changed(env, **{"database.engine": "aurora", **(GLOBAL_DR if compute == "global" else {})})
    spec = environment(env)
    if compute:
        spec = spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"compute": compute})})
    return spec


def preview_render(spec) -> list[dict]:
    """Every custom resource of the stack as a first `pulumi preview` sees it: type, name, URN, inputs
    (pulumi's `Unknown` where the value is unknown) and property dependencies (URNs)."""
    from infra.aws.tracking import MlflowTracking, MlflowTrackingArgs

    mocks = PreviewMocks()
    pulumi.runtime.set_mocks(mocks, project="mlflow-tracking", stack=spec.name, preview=True)
    monitor = pulumi.runtime.settings.SETTINGS.monitor
    registered = {}
    register = monitor.RegisterResource

    def recording(request):
        response = register(request)
        registered[(request.type, request.name)] = (response.urn, {k: list(v.urns) for k, v in request.propertyDependencies.items()})
        return response

    monitor.RegisterResource = recording

    @pulumi.runtime.test
    def build():
        MlflowTracking(f"mlflow-{spec.name}", MlflowTrackingArgs(spec=spec))

    build()
    out = []
    for r in mocks.resources:
        if r.custom:
            urn, deps = registered[(r.typ, r.name)]
            out.append({"type": r.typ, "name": r.name, "urn": urn, "inputs": dict(r.inputs), "deps": deps})
    return out


def substitute(value, marker):
    """`value` with each pulumi `Unknown` (and each rules.UNKNOWN) replaced by `marker`."""
    if isinstance(value, Unknown) or value is UNKNOWN:
        return marker
    if isinstance(value, dict):
        return {k: substitute(v, marker) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, marker) for v in value]
    return value


def analyzer_props(props: dict, sentinel: str = pp.UNKNOWN_STRING_VALUE):
    """Props as pulumi_policy's Analyze/AnalyzeStack build them from the engine's request: a protobuf
    Struct with the engine's unknown sentinel, MessageToDict, deserialize_properties, then
    unknown_checking_proxy (pulumi_policy/policy.py)."""
    struct = struct_pb2.Struct()
    struct.update(substitute(props, sentinel))
    return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct)))


def as_outputs(record: dict) -> dict:
    """What a stack policy sees in a preview: the planned outputs, i.e. the inputs plus computed
    outputs such as id and arn, unknown for a resource about to be created."""
    return {"id": UNKNOWN, "arn": UNKNOWN, **record["inputs"]}


def policy_stack(records: list[dict], deps: bool = True) -> list[PolicyResource]:
    """StackValidationArgs.resources as AnalyzeStack builds them, property dependencies linked to the
    PolicyResource objects (or left empty, as an engine that sends none)."""
    resources = [PolicyResource(r["type"], analyzer_props(as_outputs(r)), r["urn"], r["name"], OPTIONS, None, None, [], {})
                 for r in records]
    by_urn = {p.urn: p for p in resources}
    if deps:
        for record, resource in zip(records, resources):
            resource.property_dependencies = {k: [by_urn[u] for u in urns if u in by_urn] for k, urns in record["deps"].items()}
    return resources


def crossguard(records: list[dict], config: dict, deps: bool = True, rules=None) -> list[tuple[str, str, str, str]]:
    """Run every rule through the CrossGuard adapters the way pulumi_policy does; (rule, level,
    resource name, message) for each report_violation call. An UnknownValueError escaping a validate
    function (pulumi_policy would demote it to an advisory 'can't run during preview' note) fails."""
    stack = StackValidationArgs(policy_stack(records, deps), config=config)
    per_resource = [(r["name"], ResourceValidationArgs(r["type"], analyzer_props(r["inputs"]), r["urn"], r["name"], OPTIONS, None,
                                                       config=config)) for r in records]
    name_of = {r["urn"]: r["name"] for r in records}
    found = []
    for rule in rules or RULES:
        if rule.stack:
            _stack_validation(rule)(stack, lambda message, urn=None, rule=rule: found.append((rule.name, rule.level, name_of[urn], message)))
        else:
            for name, args in per_resource:
                _resource_validation(rule)(args, lambda message, urn=None, rule=rule, name=name: found.append((rule.name, rule.level, name, message)))
    return found


def mandatory(found):
    return [f for f in found if f[1] == "mandatory"]


def as_res(records: list[dict], deps: bool = True) -> list[Res]:
    return [Res(r["type"], r["name"], substitute(r["inputs"], UNKNOWN), r["urn"], r["deps"] if deps else {}) for r in records]


def config_of(spec) -> dict:
    return policy_config(spec, plan(spec))


@pytest.fixture(scope="module")
def previews():
    cache = {}

    def get(env: str, compute: str | None = None):
        if (env, compute) not in cache:
            spec = variant(env, compute)
            cache[(env, compute)] = (preview_render(spec), config_of(spec))
        return copy.deepcopy(cache[(env, compute)])
    return get


def record(records, typ, suffix=""):
    return next(r for r in records if r["type"] == typ and r["name"].endswith(suffix))


UNVERIFIABLE = re.compile(r"^cannot be verified during preview: (?P<input>\S+) is unknown until apply")


def set_params(inputs, **values):
    for p in inputs["parameters"]:
        if p["name"] in values:
            p["value"] = values[p["name"]]


def unverifiable_inputs(found) -> set[tuple[str, str, str]]:
    """(rule, resource, unknown input) of each report that says it cannot verify; fails on any other."""
    out = set()
    for rule, _, resource, message in found:
        match = UNVERIFIABLE.match(message)
        assert match, f"{rule} on {resource}: {message}"
        out.add((rule, resource, match["input"]))
    return out


# ---------------------------------------------------------------------------------------------
# the sentinel, and how unknowns reach the rules
# ---------------------------------------------------------------------------------------------

def test_unknown_sentinels_are_pulumis():
    from pulumi.runtime.rpc import UNKNOWN as SDK_UNKNOWN

    # the string `pulumi preview --json` writes (the engine's computedValuePlaceholder) is the SDK's and
    # pulumi_policy's unknown string
    assert DOCUMENT_UNKNOWN == SDK_UNKNOWN == pp.UNKNOWN_STRING_VALUE == "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    typed = [pp.UNKNOWN_BOOLEAN_VALUE, pp.UNKNOWN_NUMBER_VALUE, pp.UNKNOWN_STRING_VALUE, pp.UNKNOWN_ARRAY_VALUE,
             pp.UNKNOWN_ASSET_VALUE, pp.UNKNOWN_ARCHIVE_VALUE, pp.UNKNOWN_OBJECT_VALUE]
    assert UNKNOWN_SENTINELS == set(typed) and all(pp._is_unknown(s) for s in typed)
    for sentinel in typed:
        assert _plain(analyzer_props({"a": {"b": [1, Unknown()]}, "c": Unknown()}, sentinel)) == {"a": {"b": [1, UNKNOWN]}, "c": UNKNOWN}


def test_pulumi_policy_raises_on_reading_an_unknown_and_the_adapters_do_not():
    props = analyzer_props({"storageEncrypted": True, "kmsKeyId": Unknown()})
    with pytest.raises(UnknownValueError) as raised:
        dict(props)  # what the adapters did: pulumi_policy turned it into an advisory "can't run" note
    assert raised.value.message == "string value at .kmsKeyId can't be known during preview"
    assert _plain(props) == {"storageEncrypted": True, "kmsKeyId": UNKNOWN}


def test_unknown_has_no_truth_value_and_survives_copies():
    import pickle

    with pytest.raises(TypeError, match="no truth value"):
        bool(UNKNOWN)
    assert copy.deepcopy({"a": [UNKNOWN]})["a"][0] is UNKNOWN
    assert pickle.loads(pickle.dumps(UNKNOWN)) is UNKNOWN
    assert repr(UNKNOWN) == "UNKNOWN"


def test_res_get_fails_closed_and_partial_only_for_check_known_rules():
    res = Res(R.SECURITY_GROUP, "sg", {"ingress": [{"protocol": "tcp", "securityGroups": [UNKNOWN]}], "name": "x"})
    with pytest.raises(UnknownInput) as raised:
        res.get("ingress")
    assert raised.value.path == "ingress[0].securityGroups[0]"
    assert raised.value.message == "cannot be verified during preview: ingress[0].securityGroups[0] is unknown until apply"
    assert res.get("name") == "x"
    fail_closed, check_known = BY_NAME["rds-storage-encrypted"], BY_NAME["sg-no-open-database-or-servers"]
    assert (fail_closed.on_unknown, check_known.on_unknown) == (FAIL_CLOSED, CHECK_KNOWN)
    with pytest.raises(UnknownInput):
        res.for_rule(fail_closed).partial("ingress")  # a fail-closed rule never sees UNKNOWN
    assert res.for_rule(check_known).partial("ingress")[0]["securityGroups"] == [UNKNOWN]
    assert Res("t", "n", {"a": UNKNOWN}).is_set("a") and not Res("t", "n", {"a": None}).is_set("a")
    with pytest.raises(ValueError, match="on_unknown"):
        R.rule("x", "f", "d", "r", "m", on_unknown="skip")


def test_every_rule_declares_its_unknown_handling_in_the_module_table():
    table = dict(re.findall(r"^(\S+)(?: \(advisory\))?\s+(fail-closed|check-known)\s", R.__doc__, re.M))
    assert table == {r.name: r.on_unknown for r in RULES}
    assert {r.on_unknown for r in RULES} == {FAIL_CLOSED, CHECK_KNOWN}
    assert R.Rule("x", "f", "d", "r", "m", lambda r, c: []).on_unknown == FAIL_CLOSED  # the default


# ---------------------------------------------------------------------------------------------
# one resource through the resource adapter
# ---------------------------------------------------------------------------------------------

def test_resource_rule_fails_closed_naming_the_unknown_input(previews):
    records, config = previews("prod")
    task = record(records, R.TASK_DEFINITION, "-api")
    assert isinstance(task["inputs"]["containerDefinitions"], Unknown)
    reports = []
    args = ResourceValidationArgs(task["type"], analyzer_props(task["inputs"]), task["urn"], task["name"], OPTIONS, None, config=config)
    _resource_validation(BY_NAME["no-plain-credentials"])(args, lambda message, urn=None: reports.append(message))
    assert reports == [("cannot be verified during preview: containerDefinitions is unknown until apply;"
                       " no-plain-credentials fails closed until it is known")]
    assert BY_NAME["no-plain-credentials"].mandatory


@pytest.mark.parametrize("value,expected", [
    (True, []),
    (False, ["storage_encrypted is not true. Fix: nothing to set: MlflowTracking encrypts with its own KMS key; do not override storage_encrypted"]),
    (pp.UNKNOWN_BOOLEAN_VALUE, [("cannot be verified during preview: storageEncrypted is unknown until apply;"
                                " rds-storage-encrypted fails closed until it is known")]),
])
def test_resource_rule_checks_its_known_input_beside_unknown_ones(previews, value, expected):
    records, config = previews("prod")
    primary = record(records, R.RDS_INSTANCE, "-primary")
    assert isinstance(primary["inputs"]["kmsKeyId"], Unknown) and isinstance(primary["inputs"]["parameterGroupName"], Unknown)
    props = analyzer_props({**primary["inputs"], "storageEncrypted": False})
    props["__target"]["storageEncrypted"] = value   # a typed sentinel as the engine sends it
    reports = []
    args = ResourceValidationArgs(primary["type"], props, primary["urn"], primary["name"], OPTIONS, None, config=config)
    _resource_validation(BY_NAME["rds-storage-encrypted"])(args, lambda message, urn=None: reports.append(message))
    assert reports == expected


# ---------------------------------------------------------------------------------------------
# whole first previews through both adapters: exactly the unverifiable inputs are reported
# ---------------------------------------------------------------------------------------------

def _expected(env: str, ec2: bool, aurora: bool = False) -> set[tuple[str, str, str]]:
    # with instance replicas: which replica hosts the UI reads are not known before the replicas
    # exist (Aurora's UI reads the one reader endpoint)
    read_check = () if env == "dev" or aurora else ("every-replica-read",)
    if ec2:  # user data embeds the database endpoint, the secret's ARN and the image URL
        return {(rule, f"mlflow-{env}-svc-{fleet}", "userData") for rule in ("open-files-limit", "no-plain-credentials", *read_check)
                for fleet in ("api", "ui")}
    # container definitions embed the log group, the secret's ARN, the image URL and the database host
    found = {(rule, f"mlflow-{env}-svc-{fleet}", "containerDefinitions")
             for rule in ("open-files-limit", "no-plain-credentials", "container-logging", *read_check) for fleet in ("api", "ui")}
    if env == "dev":  # no replica: whether the UI would read one cannot be shown
        found |= {("replicas-for-ui-reads", f"mlflow-dev-svc-{fleet}", "containerDefinitions") for fleet in ("api", "ui")}
    return found


VARIANTS = [("prod", None), ("prod", "ec2"), ("prod", "aurora"), ("prod", "global"), ("staging", None), ("dev", None)]


@pytest.mark.parametrize("deps", [True, False], ids=["property-deps", "no-deps"])
@pytest.mark.parametrize("env,compute", VARIANTS, ids=[f"{e}-{c or 'ecs'}" for e, c in VARIANTS])
def test_first_preview_reports_exactly_what_cannot_be_verified(previews, env, compute, deps):
    records, config = previews(env, compute)
    assert sum(unknown_path_count(r["inputs"]) for r in records) > 40   # a preview, not a rendered stack
    found = crossguard(records, config, deps)
    expected = _expected(env, compute == "ec2", compute in ("aurora", "global"))
    assert unverifiable_inputs(mandatory(found)) == expected
    assert len(mandatory(found)) == len(expected)
    # the offline evaluation of the same stack agrees
    offline = [(v.rule.name, v.rule.level, v.resource, v.message) for v in evaluate(as_res(records, deps), PolicyConfig.from_dict(config))]
    assert unverifiable_inputs(mandatory(offline)) == expected
    # advisory: access logs are checked (known even though the load balancers' ARNs are not)
    assert {(r, m) for r, lvl, _, m in found if lvl == "advisory"} == {("lb-access-logs", ("access_logs not enabled. Fix: an access-log"
                                                                         " bucket is not provisioned yet: add one to the stack"))}


def unknown_path_count(value) -> int:
    if isinstance(value, Unknown):
        return 1
    if isinstance(value, dict):
        return sum(unknown_path_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(unknown_path_count(v) for v in value)
    return 0


# Each mandatory rule on a first preview: checked on what is known (a violating change to a known
# input is still reported), or reporting the unknown input it needs. (variant, type, name suffix,
# change to the preview inputs, fragment of the expected message)
PREVIEW_CASES = {
    "rds-storage-encrypted": ("prod", R.RDS_INSTANCE, "-primary", lambda p: p.update(storageEncrypted=False), "storage_encrypted is not true"),
    "rds-not-public": ("prod", R.RDS_INSTANCE, "-primary", lambda p: p.update(publiclyAccessible=True), "publicly_accessible is true"),
    "rds-backup-retention": ("prod", R.RDS_INSTANCE, "-primary", lambda p: p.update(backupRetentionPeriod=3), "backup_retention_period 3 < 7 days"),
    "rds-deletion-protection": ("prod", R.RDS_INSTANCE, "-replica-0", lambda p: p.update(deletionProtection=False), "deletion_protection is not true"),
    "rds-multi-az": ("prod", R.RDS_INSTANCE, "-primary", lambda p: p.update(multiAz=False), "multi_az is not true"),
    "rds-performance-insights": ("prod", R.RDS_INSTANCE, "-replica-0", lambda p: p.update(performanceInsightsEnabled=False), "performance_insights_enabled is not true"),
    "rds-enhanced-monitoring": ("prod", R.RDS_INSTANCE, "-primary", lambda p: p.update(monitoringInterval=0), "monitoring_interval 0 (off)"),
    "rds-storage-type": ("prod", R.RDS_INSTANCE, "-replica-0", lambda p: p.update(storageType="gp2"), "storage_type 'gp2'"),
    "rds-custom-parameter-group": ("prod", R.RDS_INSTANCE, "-replica-0", lambda p: p.update(parameterGroupName="default.postgres17"), "parameter_group_name 'default.postgres17'"),
    "rds-no-burstable-production": ("prod", R.RDS_INSTANCE, "-primary", lambda p: p.update(instanceClass="db.t4g.large"), "instance_class db.t4g.large"),
    "pg-stat-statements": ("prod", R.PARAMETER_GROUP, "-primary", lambda p: set_params(p, shared_preload_libraries="auto_explain"), "lacks pg_stat_statements"),
    "pg-never-unsafe": ("prod", R.PARAMETER_GROUP, "-replica", lambda p: set_params(p, full_page_writes="0"), "full_page_writes is off"),
    "pg-synchronous-commit": ("prod", R.PARAMETER_GROUP, "-primary", lambda p: set_params(p, synchronous_commit="off"), "synchronous_commit off in production"),
    "pg-force-ssl": ("prod", R.PARAMETER_GROUP, "-primary", lambda p: set_params(p, **{"rds.force_ssl": "0"}), "rds.force_ssl is not 1"),
    # stack rules linking an instance to its group through the unknown parameterGroupName
    "pg-replica-hot-standby-feedback": ("prod", R.PARAMETER_GROUP, "-replica", lambda p: set_params(p, hot_standby_feedback="0"), "mlflow-prod-db-replica lacks hot_standby_feedback=1"),
    "connection-budget": ("prod", R.PARAMETER_GROUP, "-primary", lambda p: set_params(p, max_connections="100"), "> max_connections 100"),
    # fail closed: the container definitions are unknown, so even a harmless change is reported
    "open-files-limit": ("prod", R.TASK_DEFINITION, "-api", lambda p: None, "containerDefinitions is unknown until apply"),
    "no-plain-credentials": ("prod", R.TASK_DEFINITION, "-api", lambda p: None, "containerDefinitions is unknown until apply"),
    "container-logging": ("prod", R.TASK_DEFINITION, "-ui", lambda p: None, "containerDefinitions is unknown until apply"),
    "imdsv2": ("prod-ec2", R.LAUNCH_TEMPLATE, "-api", lambda p: p["metadataOptions"].update(httpTokens="optional"), "metadata_options.http_tokens is not required"),
    "ebs-encrypted": ("prod-ec2", R.LAUNCH_TEMPLATE, "-ui", lambda p: p["blockDeviceMappings"][0]["ebs"].update(encrypted="false"), "unencrypted volume /dev/xvda"),
    "lb-internet-facing": ("prod", R.LOAD_BALANCER, "-api", lambda p: p.update(internal=False), "not the UI's"),
    "lb-deletion-protection": ("prod", R.LOAD_BALANCER, "-ui", lambda p: p.update(enableDeletionProtection=False), "enable_deletion_protection is not true"),
    "sg-no-open-database-or-servers": ("prod", R.SECURITY_GROUP, "-db", lambda p: p["ingress"].append({"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["0.0.0.0/0"]}), "ingress from 0.0.0.0/0 covers port 5432"),
    "s3-closed-encrypted-versioned": ("prod", R.BUCKET_VERSIONING, "", lambda p: p["versioningConfiguration"].update(status="Suspended"), "versioning not enabled"),
    "placement-training-zones": ("dev", R.SUBNET, "-private-us-east-1b", lambda p: p.update(availabilityZone="us-east-1d"), "mlflow-dev-net-private-us-east-1b (us-east-1d)"),
    # only a stack without replicas can break it; the container definitions that would show it are unknown
    "replicas-for-ui-reads": ("prod", R.RDS_INSTANCE, "-replica-0", lambda p: p.pop("replicateSourceDb"), "containerDefinitions is unknown until apply (the stack has no replica"),
    "tags-environment-owner": ("prod", R.RDS_INSTANCE, "-primary", lambda p: p["tags"].pop("owner"), "missing tags: owner"),
    "aurora-reader-in-second-zone": ("prod-aurora", "aws:rds/clusterInstance:ClusterInstance", "-reader-0",
                                     lambda p: p.update(availabilityZone="us-east-1a"), "2 instance(s) in 1 zone(s)"),
    # the replica hosts the UI reads are unknown until the replicas exist
    "every-replica-read": ("prod", R.TASK_DEFINITION, "-ui", lambda p: None, "containerDefinitions is unknown until apply (each of the 1 replicas"),
}


def test_preview_cases_cover_every_mandatory_rule():
    assert set(PREVIEW_CASES) == {r.name for r in RULES if r.mandatory}


@pytest.mark.parametrize("deps", [True, False], ids=["property-deps", "no-deps"])
@pytest.mark.parametrize("name", sorted(PREVIEW_CASES))
def test_no_mandatory_rule_is_skipped_in_a_first_preview(previews, name, deps):
    where, typ, suffix, change, fragment = PREVIEW_CASES[name]
    env, _, compute = where.partition("-")
    records, config = previews(env, compute or None)
    rule = BY_NAME[name]
    target = record(records, typ, suffix)
    before = crossguard(records, config, deps, [rule])
    change(target["inputs"])
    after = crossguard(records, config, deps, [rule])
    if (name, target["name"], "containerDefinitions") in _expected(env, bool(compute)):
        assert [m for *_, m in before] == [m for *_, m in after] and any(fragment in m for *_, m in after)
        return
    assert before == [], before
    assert any(fragment in message for *_, message in after), after
    assert all(level == "mandatory" for _, level, _, _ in after)


# ---------------------------------------------------------------------------------------------
# check-known rules: how they work around an unknown input, and when they still fail closed
# ---------------------------------------------------------------------------------------------

def run(records, config, name, deps=True):
    return [(resource, message) for _, _, resource, message in crossguard(records, config, deps, [BY_NAME[name]])]


@pytest.mark.parametrize("deps", [True, False], ids=["property-deps", "no-deps"])
def test_connection_budget_finds_the_group_of_an_unknown_parameter_group_name(previews, deps):
    records, config = previews("prod")
    primary = record(records, R.RDS_INSTANCE, "-primary")
    group = record(records, R.PARAMETER_GROUP, "-primary")
    assert isinstance(primary["inputs"]["parameterGroupName"], Unknown)
    assert primary["deps"]["parameterGroupName"] == [group["urn"]]
    assert run(records, config, "connection-budget", deps) == []
    # another group named by the convention but not depended on is not the primary's
    decoy = copy.deepcopy(group)
    decoy.update(name="mlflow-prod-db-primary-old", urn=group["urn"] + "-old")
    set_params(decoy["inputs"], max_connections="100")
    assert run(records + [decoy], config, "connection-budget", deps) == []
    set_params(group["inputs"], max_connections="100")
    [(resource, message)] = run(records, config, "connection-budget", deps)
    assert resource == "mlflow-prod-db-primary" and "> max_connections 100" in message


def test_property_dependencies_beat_the_naming_convention(previews):
    records, config = previews("prod")
    primary = record(records, R.RDS_INSTANCE, "-primary")
    group = record(records, R.PARAMETER_GROUP, "-primary")
    group.update(name="tuned", urn=group["urn"].replace("mlflow-prod-db-primary", "tuned"))
    primary["deps"]["parameterGroupName"] = [group["urn"]]
    set_params(group["inputs"], max_connections="100")
    [(_, message)] = run(records, config, "connection-budget", deps=True)
    assert "> max_connections 100" in message
    [(_, message)] = run(records, config, "connection-budget", deps=False)  # no group named by the convention
    assert message.startswith("cannot be verified during preview: parameterGroupName is unknown until apply")


@pytest.mark.parametrize("deps", [True, False], ids=["property-deps", "no-deps"])
def test_connection_budget_fails_closed_when_the_group_cannot_be_found(previews, deps):
    records, config = previews("prod")
    group = record(records, R.PARAMETER_GROUP, "-primary")
    group.update(name="tuned", urn=group["urn"].replace("mlflow-prod-db-primary", "tuned"))  # neither depended on nor named by convention
    for name in ("connection-budget", "rds-custom-parameter-group"):
        assert run(records, config, name, deps) == [(
            "mlflow-prod-db-primary", ("cannot be verified during preview: parameterGroupName is unknown until apply"
            f" (no parameter group of this stack matches it); {name} fails closed until it is known"))]


def test_a_known_default_group_name_is_still_refused_in_a_preview(previews):
    records, config = previews("prod")
    record(records, R.RDS_INSTANCE, "-primary")["inputs"]["parameterGroupName"] = "default.postgres17"
    assert run(records, config, "rds-custom-parameter-group") == [
        ("mlflow-prod-db-primary", "parameter_group_name 'default.postgres17'. Fix: nothing to set: the plan's parameter groups are attached")]


@pytest.mark.parametrize("deps", [True, False], ids=["property-deps", "no-deps"])
def test_s3_settings_with_an_unknown_bucket_belong_to_their_own_bucket_only(previews, deps):
    records, config = previews("prod")
    bucket = record(records, R.BUCKET, "-bucket")
    assert all(isinstance(r["inputs"]["bucket"], Unknown) for r in records if r["type"] == R.PUBLIC_ACCESS_BLOCK)
    assert run(records, config, "s3-closed-encrypted-versioned", deps) == []
    # a second bucket without settings is reported, and its neighbour's settings are not taken for its own
    logs = copy.deepcopy(bucket)
    logs.update(name="mlflow-prod-logs-bucket", urn=bucket["urn"].replace("artifacts-bucket", "logs-bucket"))
    found = run(records + [logs], config, "s3-closed-encrypted-versioned", deps)
    assert sorted(m.split(".")[0] for r, m in found if r == "mlflow-prod-logs-bucket") == [
        "no server-side encryption configuration", "public access not fully blocked", "versioning not enabled"]
    assert all(r == "mlflow-prod-logs-bucket" for r, _ in found)


def test_s3_fails_closed_on_an_unknown_setting(previews):
    records, config = previews("prod")
    record(records, R.PUBLIC_ACCESS_BLOCK)["inputs"]["blockPublicPolicy"] = Unknown()
    assert run(records, config, "s3-closed-encrypted-versioned") == [
        ("mlflow-prod-artifacts-public-access", ("cannot be verified during preview: blockPublicPolicy is unknown until apply;"
                                                " s3-closed-encrypted-versioned fails closed until it is known"))]


@pytest.mark.parametrize("deps", [True, False], ids=["property-deps", "no-deps"])
def test_placement_judges_subnets_created_in_the_update_by_their_zone(previews, deps):
    records, config = previews("dev")
    service = record(records, R.ECS_SERVICE, "-api")
    assert isinstance(service["inputs"]["networkConfiguration"]["subnets"], Unknown)
    assert run(records, config, "placement-training-zones", deps) == []
    record(records, R.SUBNET, "-us-east-1a")["inputs"]["availabilityZone"] = "us-east-1f"
    found = run(records, config, "placement-training-zones", deps)
    assert {r for r, _ in found} == {"mlflow-dev-svc-api", "mlflow-dev-db-subnets"}
    assert all("outside the training zones: mlflow-dev-net-private-us-east-1a (us-east-1f)" in m for _, m in found)


def test_placement_fails_closed_without_subnets_to_judge_by(previews):
    records, config = previews("dev")
    records = [r for r in records if r["type"] != R.SUBNET]
    found = run(records, config, "placement-training-zones", deps=False)
    assert ("mlflow-dev-svc-api", ("cannot be verified during preview: networkConfiguration.subnets is unknown until apply"
            " (no subnet of this stack to judge it by); placement-training-zones fails closed until it is known")) in found
    assert {r for r, _ in found} == {"mlflow-dev-svc-api", "mlflow-dev-db-subnets"}


@pytest.mark.parametrize("entry,expected", [
    ({"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": [Unknown()]},
     ["cannot be verified during preview: ingress[1].cidrBlocks is unknown until apply (it could open port 5432 to the world)"]),
    ({"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": [Unknown()]}, []),  # cannot reach 5432 or the tracking port
    ({"protocol": "tcp", "fromPort": Unknown(), "toPort": Unknown(), "cidrBlocks": ["0.0.0.0/0"]},
     ["cannot be verified during preview: ingress[1].fromPort, ingress[1].toPort is unknown until apply (it could open port 5432 to the world)",
      "cannot be verified during preview: ingress[1].fromPort, ingress[1].toPort is unknown until apply (it could open port 5000 to the world)"]),
    ({"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["10.0.0.0/8"], "securityGroups": [Unknown()]}, []),
])
def test_security_group_ingress_with_unknowns(previews, entry, expected):
    records, config = previews("prod")
    group = record(records, R.SECURITY_GROUP, "-db")
    assert isinstance(group["inputs"]["ingress"][0]["securityGroups"][0], Unknown)   # ingress from the servers' group
    group["inputs"]["ingress"] = group["inputs"]["ingress"][:1] + [entry]
    assert R.TRACKING_PORT == 5000
    assert [m.split(";")[0] for r, m in run(records, config, "sg-no-open-database-or-servers")] == expected


def test_tags_fail_closed_on_an_unknown_required_value(previews):
    records, config = previews("prod")
    record(records, R.RDS_INSTANCE, "-primary")["inputs"]["tags"]["owner"] = Unknown()
    assert run(records, config, "tags-environment-owner") == [
        ("mlflow-prod-db-primary", ("cannot be verified during preview: tags.owner is unknown until apply;"
                                   " tags-environment-owner fails closed until it is known"))]


@pytest.mark.parametrize("deps", [True, False], ids=["property-deps", "no-deps"])
def test_internet_facing_ui_is_judged_by_listeners_whose_load_balancer_is_unknown(previews, deps):
    records, config = previews("prod")
    ui = record(records, R.LOAD_BALANCER, "-ui")
    http = record(records, R.LISTENER, "-ui-http")
    assert isinstance(http["inputs"]["loadBalancerArn"], Unknown)
    ui["inputs"]["internal"] = False
    assert http["inputs"]["defaultActions"][0]["type"] == "forward"   # no HTTPS, no redirect
    assert [m.split(".")[0] for _, m in run(records, config, "lb-internet-facing", deps)] == [
        "internet-facing without an HTTPS listener, or with HTTP that does not redirect"]
    http["inputs"]["defaultActions"] = Unknown()
    assert [m.split(";")[0] for _, m in run(records, config, "lb-internet-facing", deps)] == [
        "cannot be verified during preview: defaultActions[0].type is unknown until apply"]


# ---------------------------------------------------------------------------------------------
# `mlflow-infra policy check ENV --stack-json` on a `pulumi preview --json` document
# ---------------------------------------------------------------------------------------------

def preview_json(records: list[dict], deps: bool = True) -> dict:
    """`pulumi preview --json` output: steps[].newState with inputs in which an unknown is Pulumi's
    computed placeholder string, and propertyDependencies."""
    steps = []
    for r in records:
        state = {"urn": r["urn"], "custom": True, "type": r["type"], "inputs": substitute(r["inputs"], DOCUMENT_UNKNOWN)}
        if deps:
            state["propertyDependencies"] = {k: v for k, v in r["deps"].items() if v}
        steps.append({"op": "create", "urn": r["urn"], "newState": state})
    return {"steps": steps, "changeSummary": {"create": len(steps)}}


def write(tmp_path, document) -> str:
    path = tmp_path / "preview.json"
    path.write_text(json.dumps(document))
    assert DOCUMENT_UNKNOWN in path.read_text() or document.get("steps") == []
    return str(path)


def test_resources_from_document_maps_the_placeholder_to_unknown(tmp_path):
    urn = "urn:pulumi:prod::mlflow-tracking::aws:ecs/service:Service::mlflow-prod-svc-api"
    document = {"steps": [{"op": "same", "newState": {
        "urn": urn, "type": R.ECS_SERVICE, "custom": True, "id": "svc-1",
        "inputs": {"cluster": DOCUMENT_UNKNOWN, "networkConfiguration": {"subnets": [DOCUMENT_UNKNOWN, "subnet-1"]}, "name": "api"},
        "propertyDependencies": {"cluster": ["urn:cluster"]}}}]}
    [res] = resources_from_document(Path(write(tmp_path, document)))
    assert res.name == "mlflow-prod-svc-api" and res.urn == urn
    assert res.props == {"cluster": UNKNOWN, "networkConfiguration": {"subnets": [UNKNOWN, "subnet-1"]}, "name": "api", "id": "svc-1"}
    assert res.depends_on("cluster") == ("urn:cluster",) and res.depends_on("name") is None


@pytest.mark.parametrize("deps", [True, False], ids=["property-deps", "no-deps"])
def test_stack_json_of_a_first_preview_fails_closed(previews, tmp_path, capsys, deps):
    records, _ = previews("prod")
    path = write(tmp_path, preview_json(records, deps))
    assert main(["policy", "check", "prod", "--stack-json", path]) == 1
    out = capsys.readouterr().out
    assert re.search(r"prod: \d+ rules, 8 mandatory violation\(s\), 2 advisory", out), out
    assert "8 of the mandatory violations could not be verified: inputs unknown until apply" in out
    found = evaluate(resources_from_document(Path(path)), PolicyConfig.from_dict(config_of(variant("prod"))))
    assert unverifiable_inputs([(v.rule.name, v.rule.level, v.resource, v.message) for v in found if v.rule.mandatory]) == _expected("prod", False)


def test_stack_json_of_an_update_preview_passes(previews, tmp_path, capsys):
    """In an update preview the task definitions' inputs are known (the resources they name exist);
    other values may still be unknown: nothing mandatory is reported."""
    records, _ = previews("prod")
    known = {(r.type, r.name): r.props for r in stack_resources(variant("prod"))}
    for r in records:
        if r["type"] == R.TASK_DEFINITION:
            r["inputs"]["containerDefinitions"] = known[(r["type"], r["name"])]["containerDefinitions"]
    assert main(["policy", "check", "prod", "--stack-json", write(tmp_path, preview_json(records))]) == 0
    out = capsys.readouterr().out
    assert "0 mandatory violation(s)" in out and "could not be verified" not in out


@pytest.mark.parametrize("deps", [True, False], ids=["property-deps", "no-deps"])
def test_stack_json_preview_still_catches_a_broken_stack_wide_rule(previews, tmp_path, capsys, deps):
    records, _ = previews("prod")
    set_params(record(records, R.PARAMETER_GROUP, "-primary")["inputs"], max_connections="100")
    path = write(tmp_path, preview_json(records, deps))
    assert main(["policy", "check", "prod", "--stack-json", path]) == 1
    capsys.readouterr()
    found = evaluate(resources_from_document(Path(path)), PolicyConfig.from_dict(config_of(variant("prod"))),
                     [BY_NAME["connection-budget"]])
    assert [(v.resource, v.message.split(" > ")[1]) for v in found] == [("mlflow-prod-db-primary", "max_connections 100")]
