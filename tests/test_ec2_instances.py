"""EC2 compute runs the ECS task's own containers: user data rendered from the real container
definitions (infra/aws/instance.py), and the ECS-style secret injection the containers do there
(infra/runtime/injected_secrets.py), against moto's Secrets Manager."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
from urllib.parse import urlparse

import pytest
from helpers import ROOT

from infra import load_environment, plan
from infra.aws.instance import (
    AMI_PARAMETER,
    DOCKER,
    ECR_LOGIN_PROGRAM,
    ecr_registry,
    env_file,
    instance_role_policy,
    plan_units,
    run_script,
    user_data,
)
from infra.aws.rendering import Runtime, container_definitions
from infra.runtime.injected_secrets import (
    SECRETS_ENV,
    SecretInjectionError,
    SecretRef,
    inject,
    parse_secrets,
    parse_value_from,
    secret_value,
)

REGION = "us-east-1"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow:3.17.2"
APP_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1a2b3c"
MASTER_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mlflow-prod-master-AbCdEf"
AUTH_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mlflow-prod-auth-GhIjKl"
RUNTIME = Runtime(image=IMAGE, region=REGION, db_host="proxy.abc.us-east-1.rds.amazonaws.com", db_port=5432,
                  replica_host="replica.abc.us-east-1.rds.amazonaws.com", secret_arn=APP_ARN,
                  log_group="/mlflow/prod", artifacts_destination="s3://mlflow-artifacts/artifacts",
                  load_balancer_host="internal-mlflow-api-123.us-east-1.elb.amazonaws.com",
                  master_secret_arn=MASTER_ARN, primary_host="db.abc.us-east-1.rds.amazonaws.com")
AUTH_RUNTIME = dataclasses.replace(RUNTIME, auth_secret_arn=AUTH_ARN)
REPOSITORY_ARN = "arn:aws:ecr:us-east-1:123456789012:repository/mlflow"
LOG_GROUP_ARN = "arn:aws:logs:us-east-1:123456789012:log-group:/mlflow/prod"


def tier(env: str, role: str, auth: bool = False):
    spec = load_environment(ROOT / "stacks" / f"{env}.yaml", ROOT / "stacks")
    tracking = spec.tracking.model_copy(update={"compute": "ec2", **({"auth": "basic"} if auth else {})})
    return {t.role: t for t in plan(spec.model_copy(update={"tracking": tracking})).tracking.tiers}[role]


CASES = [(env, role, auth) for env in ("dev", "prod") for role in ("api", "ui") for auth in (False, True)]


@pytest.fixture(params=CASES, ids=[f"{e}-{r}{'-auth' if a else ''}" for e, r, a in CASES])
def rendered(request):
    """(definitions, user data) for one tier, from the real ECS rendering."""
    env, role, auth = request.param
    definitions = container_definitions(tier(env, role, auth), AUTH_RUNTIME if auth else RUNTIME)
    return role, definitions, user_data(definitions, role=role, environment=env, region=REGION)


# ---------------------------------------------------------------------------------------------
# reading the rendered script back

_HEREDOC = re.compile(r"^cat > (\S+) <<'(\w+)'\n(.*?)^\2\nchmod (\d{4}) \1\n", re.DOTALL | re.MULTILINE)


def files(script: str) -> dict[str, tuple[str, str]]:
    """path -> (content, mode) of every file the script writes through a heredoc."""
    return {m[1]: (m[3], m[4]) for m in _HEREDOC.finditer(script)}


def by_name(definitions: list[dict]) -> dict[str, dict]:
    return {d["name"]: d for d in definitions}


def unit_files(script: str) -> dict[str, str]:
    return {os.path.basename(p): c for p, (c, _) in files(script).items() if p.startswith("/etc/systemd/system/")}


def run_argv(script_text: str, tmp_path) -> list[str]:
    """The argv the unit's run script hands docker, as bash itself parses it (a stub docker records it)."""
    log = tmp_path / "docker-calls.jsonl"
    stub = tmp_path / "docker"
    stub.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    path = tmp_path / "run.sh"
    path.write_text(script_text.replace(DOCKER, str(stub)))
    log.unlink(missing_ok=True)
    subprocess.run(["bash", str(path)], check=True, env={**os.environ, "HOME": str(tmp_path)})
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0][:2] == ["rm", "--force"], "a stale container is removed first"
    return calls[-1]


def parse_env_file(text: str) -> dict[str, str]:
    """As docker reads --env-file: NAME=VALUE per line, the value literal."""
    pairs = [line.split("=", 1) for line in text.splitlines()]
    names = [p[0] for p in pairs]
    assert len(names) == len(set(names)), "a variable appears twice in an env file"
    return dict(pairs)


def option_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def image_index(argv: list[str]) -> int:
    return argv.index(IMAGE)


# ---------------------------------------------------------------------------------------------
# the script

def test_user_data_and_every_file_it_writes_are_valid(rendered, tmp_path):
    _, definitions, script = rendered
    for name, text in {"user-data.sh": script, **{os.path.basename(p): c for p, (c, _) in files(script).items()
                                                     if p.endswith(".sh")}}.items():
        path = tmp_path / name
        path.write_text(text)
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}"
    assert script.startswith("#!/usr/bin/bash\n") and "set -euo pipefail\numask 077\n" in script
    written = files(script)
    assert len(written) == 3 * len(definitions) + 1, "an env file, a run script and a unit per container, and docker's config"
    assert all(mode == "0600" for p, (_, mode) in written.items() if p.endswith((".env", "config.json")))


# The directives the units may use, by section (systemd.unit(5), systemd.service(5)): systemd only
# warns about an unknown one and ignores it, so a typo would silently drop an ordering or a restart.
UNIT_DIRECTIVES = {"Unit": {"Description", "Requires", "Wants", "After"},
                   "Service": {"Type", "RemainAfterExit", "ExecStart", "ExecStop", "TimeoutStopSec", "Restart", "RestartSec"},
                   "Install": {"WantedBy"}}


def test_units_use_known_directives_and_run_scripts_the_user_data_writes(rendered):
    _, _, script = rendered
    written = files(script)
    for name, text in unit_files(script).items():
        section = None
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                assert section in UNIT_DIRECTIVES, f"{name}: section [{section}]"
                continue
            key, sep, value = line.partition("=")
            assert sep and section and key in UNIT_DIRECTIVES[section], f"{name}: {line!r} in [{section}]"
            if key == "ExecStart":  # the unit runs a script this user data writes, with an absolute interpreter
                interpreter, path = value.split()
                assert interpreter == "/usr/bin/bash" and written[path][1] == "0700", f"{name}: {value}"
        assert "[Service]" in text and ("[Install]" in text) == (name == f"mlflow-{rendered[0]}.service"), name


def test_pulls_exactly_the_ecs_image_and_nothing_from_the_internet(rendered, tmp_path):
    _, definitions, script = rendered
    assert {d["image"] for d in definitions} == {IMAGE}
    assert re.findall(r"^\S*docker pull (.+)$", script, re.MULTILINE) == [IMAGE], "one pull, of the pinned tag ECS runs"
    for path, (text, _) in files(script).items():
        if path.endswith(".sh"):
            assert run_argv(text, tmp_path)[image_index(run_argv(text, tmp_path))] == IMAGE
    lowered = script.lower()
    assert "pip install" not in lowered and "pip3" not in lowered and "curl " not in lowered and "wget" not in lowered
    assert not re.search(r"^\s*(dnf|yum|rpm) ", script, re.MULTILINE), "nothing is installed: the ECR login is the AMI's python3"
    for url in re.findall(r"[a-z]+://[^\s'\"]+", script):
        host = urlparse(url).hostname
        assert (url.startswith("s3://") or host in ("127.0.0.1", "localhost", "169.254.169.254") or host.endswith(".amazonaws.com")
                or "{" in url), url  # the login program's own f-strings name the metadata service and api.ecr
    assert files(script)["/etc/mlflow/ecr-login.py"] == (ECR_LOGIN_PROGRAM.read_text(), "0700")
    assert re.findall(r"^python3 .*$", script, re.MULTILINE) == [
        "python3 /etc/mlflow/ecr-login.py us-east-1 | /usr/bin/docker login --username AWS --password-stdin"
        " 123456789012.dkr.ecr.us-east-1.amazonaws.com"]
    assert script.index("docker login") < script.index("docker pull"), "logged in before the pull"


def test_each_container_runs_its_entrypoint_command_logs_and_limits(rendered, tmp_path):
    role, definitions, script = rendered
    written = files(script)
    for d in definitions:
        unit = f"mlflow-{role}" if d["essential"] else f"mlflow-{d['name']}"
        argv = run_argv(written[f"/etc/mlflow/{unit}.sh"][0], tmp_path)
        at = image_index(argv)
        assert argv[:3] == ["run", "--rm", "--name"] and argv[3] == unit
        assert option_values(argv, "--network") == ["host"]
        assert option_values(argv, "--env-file") == [f"/etc/mlflow/{d['name']}.env"]
        assert option_values(argv, "--entrypoint") == d["entryPoint"][:1]
        assert argv[at + 1:] == d["entryPoint"][1:] + d["command"], "the command ECS runs, word for word"
        options = d["logConfiguration"]["options"]
        assert option_values(argv, "--log-driver") == ["awslogs"]
        assert sorted(option_values(argv, "--log-opt")) == sorted([
            f"awslogs-group={options['awslogs-group']}", f"awslogs-region={options['awslogs-region']}",
            f"tag={options['awslogs-stream-prefix']}/{d['name']}/{{{{.ID}}}}"])
        assert options["awslogs-group"] == RUNTIME.log_group and options["awslogs-region"] == REGION
        assert option_values(argv, "--ulimit") == [f"{u['name']}={u['softLimit']}:{u['hardLimit']}" for u in d.get("ulimits", [])]
        if "healthCheck" in d:
            health = d["healthCheck"]
            assert option_values(argv, "--health-cmd") == [health["command"][1]]
            assert option_values(argv, "--health-interval") == [f"{health['interval']}s"]
            assert option_values(argv, "--health-start-period") == [f"{health['startPeriod']}s"]
    server = by_name(definitions)["mlflow"]
    assert server["ulimits"] and server["ulimits"][0]["softLimit"] > 1024, "the plan's nofile limit reaches the server"


def test_env_files_carry_every_pair_and_the_secrets_as_ecs_lists_them(rendered):
    _, definitions, script = rendered
    written = files(script)
    for d in definitions:
        env = parse_env_file(written[f"/etc/mlflow/{d['name']}.env"][0])
        secrets = json.loads(env.pop(SECRETS_ENV))
        assert secrets == d["secrets"]
        assert env == {p["name"]: p["value"] for p in d["environment"]}
        assert not {s["name"] for s in secrets} & set(env), "a secret's variable also in plain environment"
    if "migrate" in by_name(definitions):  # the API's instances run the migrate step; the UI's wait for its schema
        names = {s["name"] for s in by_name(definitions)["migrate"]["secrets"]}
        assert {"DB_USERNAME", "DB_PASSWORD", "APP_DB_USERNAME", "APP_DB_PASSWORD"} <= names


def test_units_order_the_steps_as_ecs_does(rendered):
    role, _, script = rendered
    units = unit_files(script)
    if role == "ui":  # no migrate step: the server alone
        assert set(units) == {"mlflow-ui.service"} and "mlflow-migrate" not in script
        assert re.search(r"^Requires=docker.service$", units["mlflow-ui.service"], re.MULTILINE)
        return
    assert set(units) == {"mlflow-migrate.service", f"mlflow-{role}.service"}
    migrate, server = units["mlflow-migrate.service"], units[f"mlflow-{role}.service"]
    assert "Type=oneshot\nRemainAfterExit=yes\n" in migrate and "Restart=" not in migrate
    assert re.search(r"^Requires=docker.service mlflow-migrate.service$", server, re.MULTILINE)
    assert re.search(r"^After=.*\bmlflow-migrate.service\b", server, re.MULTILINE)
    assert f"ExecStop=-/usr/bin/docker stop --time 30 mlflow-{role}\n" in server and "Restart=always\n" in server
    assert script.rstrip().endswith(f"systemctl enable --now --no-block mlflow-{role}.service")
    assert "systemctl disable --now --no-block ecs.service" in script


# ---------------------------------------------------------------------------------------------
# parity: what the translation cannot carry over is refused

def definitions_for(role="api", runtime=RUNTIME):
    return container_definitions(tier("prod", role), runtime)


@pytest.mark.parametrize("key, value", [("mountPoints", [{"sourceVolume": "data", "containerPath": "/data"}]),
                                        ("linuxParameters", {"initProcessEnabled": True}), ("stopTimeout", 120),
                                        ("user", "0"), ("readonlyRootFilesystem", True)])
def test_a_key_the_translation_does_not_carry_is_refused(key, value):
    definitions = definitions_for()
    by_name(definitions)["mlflow"][key] = value
    with pytest.raises(ValueError, match=rf"^container 'mlflow': it sets {key}; the EC2 translation"):
        user_data(definitions, role="api", environment="prod", region=REGION)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["mlflow"]["logConfiguration"]["options"].update({"awslogs-endpoint": "https://x"}), "awslogs option awslogs-endpoint"),
    (lambda d: d["mlflow"]["logConfiguration"].update({"logDriver": "json-file"}), "is not the awslogs driver"),
    (lambda d: d["mlflow"]["logConfiguration"]["options"].update({"awslogs-region": "eu-west-1"}), "logs to eu-west-1"),
    (lambda d: d["mlflow"].update({"dependsOn": [{"containerName": "migrate", "condition": "START"}]}), "dependsOn"),
    (lambda d: d["migrate"].update({"essential": True}), "exactly one essential container"),
    (lambda d: d["mlflow"].update({"dependsOn": []}), "'migrate': it is neither essential"),
    (lambda d: d["mlflow"].update({"portMappings": [{"containerPort": 5000, "hostPort": 80}]}), "port mapping"),
    (lambda d: d["mlflow"]["secrets"].append({"name": "X", "valueFrom": "arn:aws:ssm:us-east-1:1:parameter/x"}), "not a Secrets Manager"),
    (lambda d: d["mlflow"]["environment"].append({"name": "BAD", "value": "two\nlines"}), "line break"),
    (lambda d: d["mlflow"].update({"image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlflow:1"}), "pulls from ECR in eu-west-1"),
])
def test_what_ec2_cannot_reproduce_is_refused(change, message):
    definitions = copy.deepcopy(definitions_for())
    change(by_name(definitions))
    with pytest.raises(ValueError, match=re.escape(message)):
        user_data(definitions, role="api", environment="prod", region=REGION)


def test_the_unchanged_definitions_are_accepted_and_the_server_is_found():
    server, before = plan_units(definitions_for("api"), REGION)
    assert server["name"] == "mlflow" and [d["name"] for d in before] == ["migrate"]
    server, before = plan_units(definitions_for("ui"), REGION)
    assert server["name"] == "mlflow" and before == []


def test_a_non_ecr_image_skips_the_registry_login():
    definitions = definitions_for()
    for d in definitions:
        d["image"] = "ghcr.io/example/mlflow:3.17.2"
    script = user_data(definitions, role="api", environment="prod", region=REGION)
    assert "ecr-login" not in script and "docker login" not in script
    assert "docker pull ghcr.io/example/mlflow:3.17.2\n" in script


def test_ecr_registry_is_read_from_the_image_uri():
    assert ecr_registry(IMAGE) == ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "us-east-1")
    assert ecr_registry("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/m@sha256:" + "a" * 64) == (
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1")
    assert ecr_registry("mlflow:3.17.2") is None and ecr_registry("public.ecr.aws/x/mlflow:1") is None


def test_a_value_that_would_end_a_heredoc_is_refused():
    definitions = definitions_for()
    by_name(definitions)["mlflow"]["command"] = ["server", "--", "mlflow", "x\nMLFLOW_RUN\ny"]
    # quoted for the shell, but the heredoc would still end at a line that is its marker
    with pytest.raises(ValueError, match="heredoc marker MLFLOW_RUN"):
        user_data(definitions, role="api", environment="prod", region=REGION)


def test_env_file_and_run_script_alone():
    d = by_name(definitions_for())["mlflow"]
    assert env_file(d).endswith(f"{SECRETS_ENV}={json.dumps(d['secrets'], separators=(',', ':'))}\n")
    assert "exec /usr/bin/docker \\\n  run" in run_script(d, "mlflow-api", "/etc/mlflow/mlflow.env")


# ---------------------------------------------------------------------------------------------
# the instance role and the AMI

@pytest.mark.parametrize("group_arn", [LOG_GROUP_ARN, LOG_GROUP_ARN + ":*"])
def test_instance_role_policy_pulls_the_repository_and_writes_the_group(group_arn):
    policy = json.loads(instance_role_policy(REPOSITORY_ARN, group_arn))
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert policy["Version"] == "2012-10-17" and all(s["Effect"] == "Allow" for s in statements.values())
    assert statements["EcrToken"]["Action"] == "ecr:GetAuthorizationToken" and statements["EcrToken"]["Resource"] == "*"
    assert sorted(statements["PullImage"]["Action"]) == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                                                         "ecr:GetDownloadUrlForLayer"]
    assert statements["PullImage"]["Resource"] == REPOSITORY_ARN
    assert sorted(statements["WriteLogs"]["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert statements["WriteLogs"]["Resource"] == f"{LOG_GROUP_ARN}:log-stream:*"


def test_the_ami_is_the_ecs_optimized_al2023_arm64_one():
    assert AMI_PARAMETER == "resolve:ssm:/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id"


# ---------------------------------------------------------------------------------------------
# injected secrets: parsing

def test_value_from_is_parsed_as_ecs_reads_it():
    assert parse_value_from("DB_PASSWORD", f"{APP_ARN}:password::") == SecretRef("DB_PASSWORD", APP_ARN, "password")
    assert parse_value_from("WHOLE", APP_ARN) == SecretRef("WHOLE", APP_ARN)
    assert parse_value_from("OLD", f"{APP_ARN}:password:AWSPREVIOUS:") == SecretRef("OLD", APP_ARN, "password", "AWSPREVIOUS")
    assert parse_value_from("W", f"{APP_ARN}:::") == SecretRef("W", APP_ARN)
    assert parse_value_from("DB_PASSWORD", f"{APP_ARN}:password::").region == "us-east-1"


@pytest.mark.parametrize("variable, value_from, message", [
    ("DB_PASSWORD", "arn:aws:ssm:us-east-1:123456789012:parameter/db", "not a Secrets Manager secret ARN"),
    ("DB_PASSWORD", "my-secret-name", "not a Secrets Manager secret ARN"),
    ("DB_PASSWORD", f"{APP_ARN}:password", "not a Secrets Manager secret ARN"),
    ("DB_PASSWORD", f"{APP_ARN}:password:AWSCURRENT:abc", "both a version stage and a version id"),
    ("1BAD", APP_ARN, "not a valid environment variable name"),
])
def test_a_malformed_value_from_is_refused(variable, value_from, message):
    with pytest.raises(SecretInjectionError, match=re.escape(message)):
        parse_value_from(variable, value_from)


@pytest.mark.parametrize("text, message", [
    ("not json", "is not JSON"), ('{"name": "X"}', "is not a list"), ('[{"name": "X"}]', "is not a list"),
    (json.dumps([{"name": "X", "valueFrom": APP_ARN}, {"name": "X", "valueFrom": MASTER_ARN}]), "sets X twice"),
])
def test_a_malformed_secrets_list_is_refused(text, message):
    with pytest.raises(SecretInjectionError, match=re.escape(message)):
        parse_secrets(text)
    assert parse_secrets("") == [] and parse_secrets("  ") == []


def test_secret_value_selects_a_key_or_the_whole_string():
    text = json.dumps({"username": "mlflow_app", "password": "s3cr3t", "port": 5432})
    assert secret_value(SecretRef("U", APP_ARN, "username"), text) == "mlflow_app"
    assert secret_value(SecretRef("P", APP_ARN, "port"), text) == "5432"
    assert secret_value(SecretRef("W", APP_ARN), text) == text
    with pytest.raises(SecretInjectionError, match="no JSON key 'nope'") as err:
        secret_value(SecretRef("U", APP_ARN, "nope"), text)
    assert "s3cr3t" not in str(err.value)
    with pytest.raises(SecretInjectionError, match="not a JSON object") as err:
        secret_value(SecretRef("U", APP_ARN, "username"), "plain-s3cr3t")
    assert "s3cr3t" not in str(err.value) and err.value.__context__ is None


def test_inject_fetches_each_secret_once_and_the_secret_wins():
    calls = []

    def fetch(arn, stage, version_id):
        calls.append((arn, stage, version_id))
        return json.dumps({"username": "u", "password": "p"})

    env = {"DB_PASSWORD": "stale", "KEEP": "1", SECRETS_ENV: json.dumps(
        [{"name": "DB_USERNAME", "valueFrom": f"{APP_ARN}:username::"}, {"name": "DB_PASSWORD", "valueFrom": f"{APP_ARN}:password::"}])}
    assert inject(env, fetch) == {"DB_USERNAME": "u", "DB_PASSWORD": "p", "KEEP": "1"}
    assert calls == [(APP_ARN, None, None)]
    assert inject({"A": "b"}, fetch) == {"A": "b"} and len(calls) == 1


# ---------------------------------------------------------------------------------------------
# injected secrets: against moto's Secrets Manager, from the env files the user data writes

@pytest.fixture
def secretsmanager(monkeypatch):
    import moto  # the [test] extra installs it
    import boto3

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # the region must come from each ARN, as on an instance
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)


APP_SECRET = {"username": "mlflow_app", "password": "app-Pa55:w0rd%x"}
MASTER_SECRET = {"username": "mlflow", "password": "master-Pa55/w0rd#y"}


def test_the_containers_env_files_resolve_to_their_secrets(secretsmanager):
    app = secretsmanager.create_secret(Name="rds!db-app", SecretString=json.dumps(APP_SECRET))["ARN"]
    master = secretsmanager.create_secret(Name="mlflow-prod-master", SecretString=json.dumps(MASTER_SECRET))["ARN"]
    runtime = dataclasses.replace(RUNTIME, secret_arn=app, master_secret_arn=master)
    script = user_data(container_definitions(tier("prod", "api"), runtime), role="api", environment="prod", region=REGION)
    written = files(script)
    migrate = inject(parse_env_file(written["/etc/mlflow/migrate.env"][0]))
    server = inject(parse_env_file(written["/etc/mlflow/mlflow.env"][0]))
    assert (migrate["DB_USERNAME"], migrate["DB_PASSWORD"]) == (MASTER_SECRET["username"], MASTER_SECRET["password"])
    assert (migrate["APP_DB_USERNAME"], migrate["APP_DB_PASSWORD"]) == (APP_SECRET["username"], APP_SECRET["password"])
    assert (server["DB_USERNAME"], server["DB_PASSWORD"]) == (APP_SECRET["username"], APP_SECRET["password"])
    assert SECRETS_ENV not in migrate and SECRETS_ENV not in server and server["DB_HOST"] == RUNTIME.db_host
    assert APP_SECRET["password"] not in script and MASTER_SECRET["password"] not in script


def test_inject_a_whole_secret_string(secretsmanager):
    arn = secretsmanager.create_secret(Name="token", SecretString="plain-t0ken")["ARN"]
    assert inject({SECRETS_ENV: json.dumps([{"name": "TOKEN", "valueFrom": arn}])}) == {"TOKEN": "plain-t0ken"}


def test_an_unknown_key_names_the_variable_and_arn_not_the_value(secretsmanager):
    arn = secretsmanager.create_secret(Name="rds!db-app", SecretString=json.dumps(APP_SECRET))["ARN"]
    env = {SECRETS_ENV: json.dumps([{"name": "DB_PASSWORD", "valueFrom": f"{arn}:passwd::"}])}
    with pytest.raises(SecretInjectionError) as err:
        inject(env)
    message = str(err.value)
    assert message.startswith(f"DB_PASSWORD from {arn}: the secret has no JSON key 'passwd'")
    assert APP_SECRET["password"] not in message and APP_SECRET["username"] not in message


def test_an_unreadable_secret_names_the_variable_and_arn(secretsmanager):
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:missing-ZzZzZz"
    with pytest.raises(SecretInjectionError, match=rf"^DB_PASSWORD: cannot read {re.escape(arn)}: ResourceNotFoundException$"):
        inject({SECRETS_ENV: json.dumps([{"name": "DB_PASSWORD", "valueFrom": f"{arn}:password::"}])})


def test_a_secret_in_another_region_is_read_there(secretsmanager):
    import boto3

    arn = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name="far", SecretString=json.dumps({"k": "v"}))["ARN"]
    assert inject({SECRETS_ENV: json.dumps([{"name": "K", "valueFrom": f"{arn}:k::"}])}) == {"K": "v"}
