"""EC2 compute as the same containers as ECS: the task's container definitions, run by docker and systemd.

Pure functions of the rendered definitions (`rendering.container_definitions`), so an instance runs
exactly the pinned ECR image an ECS task runs, with the same command, environment, secrets, limits
and log group, and needs no internet: ECR (ecr.api, ecr.dkr, image layers in S3), CloudWatch Logs and
Secrets Manager are all reached through the VPC's endpoints. No Pulumi here; tests run these as-is.

The translation is strict: a definition key or option it does not carry over raises ValueError,
so ECS and EC2 cannot silently drift apart when the task definition grows.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from pathlib import Path

from ..endpoints import SECRETS_ENV
from ..runtime.injected_secrets import parse_value_from

# The Amazon ECS-optimized Amazon Linux 2023 AMI for arm64 (Graviton), resolved by EC2 at launch. It
# ships docker (and containerd) in the image, so nothing is installed from the internet to run a
# container. Parameter format: ECS Developer Guide, "Retrieving Amazon ECS-optimized Linux AMI
# metadata" (/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/<version>, `recommended/image_id`).
AMI_PARAMETER = "resolve:ssm:/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id"

CONFIG_DIR = "/etc/mlflow"
ECR_LOGIN_PROGRAM = Path(__file__).with_name("ecr_login.py")
ECR_LOGIN_PATH = f"{CONFIG_DIR}/ecr-login.py"
DOCKER_CONFIG_DIR = "/root/.docker"
DOCKER = "/usr/bin/docker"
BASH = "/usr/bin/bash"
STOP_TIMEOUT_SECONDS = 30  # ECS's default stopTimeout: the same grace for gunicorn's workers to finish
UNIT_STOP_TIMEOUT_SECONDS = 45  # systemd waits for `docker stop` (30 s) and docker's own teardown
# ECR's registry host: ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn]
_ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")

# What the translation carries over; anything else in a definition is refused by name.
SUPPORTED_KEYS = frozenset({"name", "image", "essential", "entryPoint", "command", "environment", "secrets",
                            "portMappings", "ulimits", "healthCheck", "dependsOn", "logConfiguration"})
# awslogs options docker's awslogs driver takes as they are (Docker docs, "Amazon CloudWatch Logs logging driver")
PASSED_LOG_OPTIONS = frozenset({"awslogs-group", "awslogs-region", "awslogs-create-group", "awslogs-datetime-format",
                                "awslogs-multiline-pattern", "mode", "max-buffer-size"})
STREAM_PREFIX = "awslogs-stream-prefix"  # ECS only: docker spells it as the `tag` template
REQUIRED_LOG_OPTIONS = ("awslogs-group", "awslogs-region")
# dependsOn conditions a oneshot unit that must exit 0 (ECS: SUCCESS) or just exit (COMPLETE) expresses
ONESHOT_CONDITIONS = frozenset({"SUCCESS", "COMPLETE"})


# ---------------------------------------------------------------------------------------------
# the image and its registry

def ecr_registry(image: str) -> tuple[str, str] | None:
    """(registry host, region) of an ECR image URI `ACCT.dkr.ecr.REGION.amazonaws.com/repo:tag`; None otherwise."""
    host = image.split("/", 1)[0] if "/" in image else ""
    match = _ECR_HOST.match(host)
    return (host, match["region"]) if match else None


def _images(definitions: list[dict]) -> list[str]:
    return list(dict.fromkeys(d["image"] for d in definitions))


# ---------------------------------------------------------------------------------------------
# checks: what the EC2 translation carries over, and nothing else

def _fail(container: str, what: str) -> ValueError:
    return ValueError(f"container {container!r}: {what}; the EC2 translation (infra/aws/instance.py) does not carry it"
                      " over, so either drop it from the ECS definition or teach instance.py to run it")


def check_definition(d: dict, region: str) -> None:
    """Raise ValueError for anything in one definition the EC2 rendering would not reproduce."""
    name = d.get("name", "")
    if not isinstance(name, str) or not _UNIT_NAME.match(name):
        raise ValueError(f"a container definition has name {name!r}; expected letters, digits, '-' and '_'")
    unknown = sorted(set(d).difference(SUPPORTED_KEYS))
    if unknown:
        raise _fail(name, f"it sets {', '.join(unknown)}")
    if not isinstance(d.get("image"), str) or not d["image"]:
        raise ValueError(f"container {name!r} has no image; expected the pinned ECR image URI")
    registry = ecr_registry(d["image"])
    if registry and registry[1] != region:
        raise ValueError(f"container {name!r} pulls from ECR in {registry[1]} but the instances run in {region};"
                         " expected the registry in the instances' region, whose VPC endpoints they can reach")
    if not d.get("entryPoint") and not d.get("command"):
        raise ValueError(f"container {name!r} has neither entryPoint nor command; expected what ECS runs")
    for pair in d.get("environment", []):
        if set(pair) != {"name", "value"} or not _VARIABLE.match(str(pair["name"])):
            raise ValueError(f"container {name!r} has environment entry {pair!r}; expected {{name, value}} with a valid name")
        if any(c in str(pair["value"]) for c in "\n\r\0"):
            raise ValueError(f"container {name!r}: {pair['name']}'s value has a line break or NUL, which a docker"
                             " --env-file cannot carry; expected a single-line value")
    for entry in d.get("secrets", []):
        ref = parse_value_from(entry.get("name"), entry.get("valueFrom"))
        if ref.region != region:
            raise ValueError(f"container {name!r}: {ref.variable} comes from {ref.arn} in {ref.region} but the instances"
                             f" run in {region}; expected a secret in their region, whose endpoint they can reach")
    for mapping in d.get("portMappings", []):
        # --network host: the container port is the host port, as with ECS's awsvpc mode
        if mapping.get("protocol", "tcp") != "tcp" or mapping.get("hostPort", mapping.get("containerPort")) != mapping.get("containerPort"):
            raise _fail(name, f"port mapping {mapping!r} is not a TCP port equal on host and container")
    for limit in d.get("ulimits", []):
        if set(limit) != {"name", "softLimit", "hardLimit"}:
            raise _fail(name, f"ulimit {limit!r} is not {{name, softLimit, hardLimit}}")
    health = d.get("healthCheck")
    if health is not None:
        command = health.get("command", [])
        if set(health).difference({"command", "interval", "timeout", "retries", "startPeriod"}) or len(command) != 2 or command[0] != "CMD-SHELL":
            raise _fail(name, f"health check {health!r} is not a CMD-SHELL command with interval/timeout/retries/startPeriod")
    _check_logs(name, d.get("logConfiguration"), region)


def _check_logs(name: str, logs: dict | None, region: str) -> None:
    if not logs or logs.get("logDriver") != "awslogs" or set(logs).difference({"logDriver", "options"}):
        raise _fail(name, f"logConfiguration {logs!r} is not the awslogs driver with options")
    options = logs.get("options", {})
    unknown = sorted(set(options).difference(PASSED_LOG_OPTIONS, {STREAM_PREFIX}))
    if unknown:
        raise _fail(name, f"the awslogs option {', '.join(unknown)}")
    missing = [o for o in REQUIRED_LOG_OPTIONS if not options.get(o)]
    if missing:
        raise ValueError(f"container {name!r} sends logs without {', '.join(missing)}; expected both, as ECS requires")
    if options["awslogs-region"] != region:
        raise ValueError(f"container {name!r} logs to {options['awslogs-region']} but the instances run in {region};"
                         " expected the log group in their region, whose logs endpoint they can reach")


def plan_units(definitions: list[dict], region: str) -> tuple[dict, list[dict]]:
    """(the server definition, the oneshot definitions it waits for, in order), every definition checked.

    The server is the one essential container; each container it dependsOn with SUCCESS/COMPLETE
    becomes a oneshot unit it Requires (SUCCESS) or Wants (COMPLETE) and starts After."""
    for d in definitions:
        check_definition(d, region)
    names = [d["name"] for d in definitions]
    if len(set(names)) != len(names):
        raise ValueError(f"container names {names} repeat; expected each name once, as ECS requires")
    essential = [d for d in definitions if d.get("essential", True)]
    if len(essential) != 1:
        raise ValueError(f"expected exactly one essential container (the server), got {[d['name'] for d in essential]}")
    server = essential[0]
    by_name = {d["name"]: d for d in definitions}
    before = []
    for dep in server.get("dependsOn", []):
        if dep.get("containerName") not in by_name or dep.get("condition") not in ONESHOT_CONDITIONS or set(dep) != {"containerName", "condition"}:
            raise _fail(server["name"], f"dependsOn {dep!r} (only SUCCESS or COMPLETE on another container in the task)")
        before.append(by_name[dep["containerName"]])
    stray = sorted(set(names).difference({server["name"]}, {d["name"] for d in before}))
    if stray:
        raise _fail(stray[0], "it is neither essential nor a container the server dependsOn")
    for d in before:
        if d.get("dependsOn") or d.get("healthCheck") or d.get("portMappings"):
            raise _fail(d["name"], "a step the server waits for with dependsOn, healthCheck or portMappings of its own")
    return server, before


# ---------------------------------------------------------------------------------------------
# rendering

def env_file(definition: dict) -> str:
    """The container's docker --env-file: its plain environment, then its `secrets` as MLFLOW_INFRA_SECRETS
    (JSON, ARNs only) for the entrypoint to resolve with the instance role. Values are literal to docker."""
    lines = [f"{p['name']}={p['value']}" for p in definition.get("environment", [])]
    if definition.get("secrets"):
        lines.append(f"{SECRETS_ENV}={json.dumps(definition['secrets'], separators=(',', ':'))}")
    return "".join(f"{line}\n" for line in lines)


def unit_name(definition: dict, role: str, server: bool) -> str:
    return f"mlflow-{role}" if server else f"mlflow-{definition['name']}"


def _seconds(value: int) -> str:
    return f"{int(value)}s"


def docker_run_args(definition: dict, container_name: str, env_path: str) -> list[str]:
    """`docker run` for one definition: host network, its env file, ulimits, awslogs, health check,
    entryPoint and command, as ECS runs it (the awslogs stream named prefix/container/id like ECS's)."""
    name, options = definition["name"], definition["logConfiguration"]["options"]
    args = [DOCKER, "run", "--rm", "--name", container_name, "--network", "host", "--env-file", env_path]
    for limit in definition.get("ulimits", []):
        args.extend(["--ulimit", f"{limit['name']}={int(limit['softLimit'])}:{int(limit['hardLimit'])}"])
    args.extend(["--log-driver", "awslogs"])
    for key in sorted(set(options) & PASSED_LOG_OPTIONS):
        args.extend(["--log-opt", f"{key}={options[key]}"])
    if options.get(STREAM_PREFIX):
        # ECS names the stream prefix/container-name/task-id; docker's `tag` template gives prefix/container-name/container-id
        args.extend(["--log-opt", f"tag={options[STREAM_PREFIX]}/{name}/{{{{.ID}}}}"])
    health = definition.get("healthCheck")
    if health:
        args.extend(["--health-cmd", health["command"][1]])
        for key, flag in (("interval", "--health-interval"), ("timeout", "--health-timeout"), ("startPeriod", "--health-start-period")):
            if key in health:
                args.extend([flag, _seconds(health[key])])
        if "retries" in health:
            args.extend(["--health-retries", str(int(health["retries"]))])
    entry = list(definition.get("entryPoint") or [])
    if entry:
        args.extend(["--entrypoint", entry[0]])
    return [*args, definition["image"], *entry[1:], *definition.get("command", [])]


def run_script(definition: dict, container_name: str, env_path: str) -> str:
    """The unit's ExecStart script: bash, every word shell-quoted, so systemd's own quoting, `%`
    specifiers and `$` expansion never touch a value."""
    quoted = " \\\n  ".join(shlex.quote(a) for a in docker_run_args(definition, container_name, env_path))
    return (f"#!{BASH}\n"
            "set -euo pipefail\n"
            f"export HOME=/root DOCKER_CONFIG={DOCKER_CONFIG_DIR}\n"
            "# a container left behind by a crash would hold the name\n"
            f"{DOCKER} rm --force {shlex.quote(container_name)} >/dev/null 2>&1 || true\n"
            f"exec {quoted}\n")


def oneshot_unit(definition: dict, script_path: str) -> str:
    return f"""[Unit]
Description=MLflow {definition['name']} step (container {definition['name']}, run to completion before the server)
Requires=docker.service
After=docker.service network-online.target
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={BASH} {script_path}
"""


def server_unit(definition: dict, role: str, before: list[tuple[str, str]], script_path: str, container: str) -> str:
    """`before`: (unit, ECS condition) of each step; SUCCESS is Requires (a failed step stops the
    server starting, as ECS does), COMPLETE only Wants."""
    required = " ".join(f"{u}.service" for u, c in before if c == "SUCCESS")
    wanted = " ".join(f"{u}.service" for u, c in before if c != "SUCCESS")
    after = " ".join(f"{u}.service" for u, _ in before)
    return f"""[Unit]
Description=MLflow tracking {role} server (container {definition['name']})
Requires=docker.service{f' {required}' if required else ''}
After=docker.service network-online.target{f' {after}' if after else ''}
Wants=network-online.target{f' {wanted}' if wanted else ''}

[Service]
ExecStart={BASH} {script_path}
ExecStop=-{DOCKER} stop --time {STOP_TIMEOUT_SECONDS} {container}
TimeoutStopSec={UNIT_STOP_TIMEOUT_SECONDS}
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
"""


def _heredoc(path: str, text: str, mode: str, marker: str) -> str:
    """Write `text` to `path` through a quoted heredoc (nothing expands), then set its mode."""
    if any(line == marker for line in text.splitlines()):
        raise ValueError(f"{path}: a line of its content is the heredoc marker {marker}; rename the marker in instance.py")
    body = text if text.endswith("\n") or not text else f"{text}\n"
    return f"cat > {shlex.quote(path)} <<'{marker}'\n{body}{marker}\nchmod {mode} {shlex.quote(path)}\n"


def registry_login(images: Iterable[str]) -> str:
    """`docker login` to every ECR registry the images come from, or nothing.

    The ECS-optimized AL2023 AMI has docker but no AWS CLI and no ECR credential helper; its python3
    (which its dnf runs on) runs `ecr_login.py`, standard library only, which gets a token with the
    instance role through the ecr.api endpoint: nothing is installed, nothing comes from the internet.
    The images are pulled right after, at boot, well within the token's 12 hours."""
    registries = sorted({r for r in (ecr_registry(i) for i in images) if r})
    if not registries:
        return "# no ECR image: no registry login\n"
    lines = [f"install -d -m 0700 {CONFIG_DIR} {DOCKER_CONFIG_DIR}\n",
             _heredoc(ECR_LOGIN_PATH, ECR_LOGIN_PROGRAM.read_text(), "0700", "ECR_LOGIN")]
    lines.extend(f"python3 {ECR_LOGIN_PATH} {shlex.quote(region)} | {DOCKER} login --username AWS --password-stdin {shlex.quote(host)}\n"
                 for host, region in registries)
    return "".join(lines)


def user_data(definitions: list[dict], *, role: str, environment: str, region: str) -> str:
    """cloud-init script (ECS-optimized AL2023, arm64) running the task's containers under systemd:
    each step the server dependsOn as a oneshot unit, then the server, restarted if it exits."""
    if not _UNIT_NAME.match(role):
        raise ValueError(f"role {role!r} is not usable in a unit name; expected letters, digits, '-' and '_'")
    server, before = plan_units(definitions, region)
    images = _images(definitions)
    parts = [f"""#!{BASH}
# MLflow {role} server for {environment}: the ECS task's containers ({', '.join(d['name'] for d in definitions)}),
# rendered by mlflow-infra from the same container definitions. Nothing comes from the internet.
set -euo pipefail
umask 077
export HOME=/root DOCKER_CONFIG={DOCKER_CONFIG_DIR}

# no ECS cluster here: the ECS agent would only retry registering; docker starts on its own instead
if systemctl cat ecs.service >/dev/null 2>&1; then systemctl disable --now --no-block ecs.service; fi
systemctl enable --now docker.service

""", registry_login(images)]
    parts.extend(f"{DOCKER} pull {shlex.quote(image)}\n" for image in images)
    parts.append(f"install -d -m 0700 {CONFIG_DIR}\n")
    steps = [*((d, False) for d in before), (server, True)]
    conditions = {dep["containerName"]: dep["condition"] for dep in server.get("dependsOn", [])}
    for d, is_server in steps:
        unit = unit_name(d, role, is_server)
        env_path, script_path = f"{CONFIG_DIR}/{d['name']}.env", f"{CONFIG_DIR}/{unit}.sh"
        parts.append(_heredoc(env_path, env_file(d), "0600", "MLFLOW_ENV"))
        parts.append(_heredoc(script_path, run_script(d, unit, env_path), "0700", "MLFLOW_RUN"))
        text = (server_unit(d, role, [(unit_name(b, role, False), conditions[b["name"]]) for b in before], script_path, unit)
                if is_server else oneshot_unit(d, script_path))
        parts.append(_heredoc(f"/etc/systemd/system/{unit}.service", text, "0644", "MLFLOW_UNIT"))
    parts.append(f"""
systemctl daemon-reload
# --no-block: cloud-init is still running this script; the units start once it returns
systemctl enable --now --no-block {unit_name(server, role, True)}.service
""")
    return "".join(parts)


def instance_role_policy(repository_arn: str, log_group_arn: str) -> str:
    """IAM policy for the instance role: pull the image from this repository and write this log group's streams."""
    group = log_group_arn.removesuffix(":*")  # DescribeLogGroups' `arn` ends in :*
    return json.dumps({"Version": "2012-10-17", "Statement": [
        # a token is not scoped to a repository: ECR accepts only "*" here
        {"Sid": "EcrToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {"Sid": "PullImage", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
         "Resource": repository_arn},
        {"Sid": "WriteLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{group}:log-stream:*"},
    ]})
