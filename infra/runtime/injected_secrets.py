"""ECS-style secret injection for containers that run without ECS (EC2: docker + systemd).

On ECS the agent resolves a container definition's `secrets` before the container starts. On EC2
the same list travels in the environment as MLFLOW_INFRA_SECRETS (JSON, exactly the definition's
`secrets`), and the container resolves it itself, with the instance role, before anything else:

  [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:REGION:ACCT:secret:NAME-AbCdEf:password::"}, ...]

`valueFrom` is either a Secrets Manager secret ARN (the whole SecretString) or
`ARN:json-key:version-stage:version-id`, as ECS reads it (an empty json-key: the whole string; empty
stage and id: AWSCURRENT). Semantics follow ECS: the secret sets its variable, even when the
environment already has one; MLFLOW_INFRA_SECRETS itself is dropped. A JSON key's string value is
injected as it is; any other JSON value (number, boolean, object) as its JSON text.

Each secret (ARN, stage, id) is read once, in the ARN's own region. Every error is one sentence
naming the variable and the ARN, never the secret's value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..endpoints import SECRETS_ENV

__all__ = ["SECRETS_ENV", "SecretInjectionError", "inject"]

ARN_PARTS = 7          # arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME
ARN_WITH_KEY_PARTS = 10  # ... :json-key:version-stage:version-id
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SecretInjectionError(ValueError):
    """A secret that cannot be injected: the message names the variable and the ARN only."""


@dataclass(frozen=True)
class SecretRef:
    """One `secrets` entry, parsed: where VARIABLE's value comes from."""

    variable: str
    arn: str
    json_key: str | None = None
    version_stage: str | None = None
    version_id: str | None = None

    @property
    def region(self) -> str:
        return self.arn.split(":")[3]

    @property
    def version(self) -> tuple[str, str | None, str | None]:
        """What one read fetches: secrets sharing it are read once."""
        return self.arn, self.version_stage, self.version_id


def parse_value_from(variable: str, value_from: str) -> SecretRef:
    """A `valueFrom` (a secret ARN, or ARN:json-key:version-stage:version-id) for `variable`."""
    if not isinstance(variable, str) or not _VARIABLE.match(variable):
        raise SecretInjectionError(f"{SECRETS_ENV} names the variable {variable!r}, which is not a valid environment"
                                   " variable name; expected letters, digits and underscores")
    if not isinstance(value_from, str):
        raise SecretInjectionError(f"{SECRETS_ENV}: {variable}'s valueFrom is not a string; expected a Secrets Manager"
                                   " secret ARN")
    parts = value_from.split(":")
    # secret names cannot hold ':', so the part count tells a bare ARN from ARN:key:stage:id
    if (len(parts) not in (ARN_PARTS, ARN_WITH_KEY_PARTS) or parts[0] != "arn" or parts[2] != "secretsmanager"
            or parts[5] != "secret" or not all(parts[1:5]) or not parts[6]):
        raise SecretInjectionError(f"{SECRETS_ENV}: {variable} has valueFrom {value_from!r}, which is not a Secrets"
                                   " Manager secret ARN; expected arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME"
                                   " optionally followed by :json-key:version-stage:version-id")
    arn = ":".join(parts[:ARN_PARTS])
    if len(parts) == ARN_PARTS:
        return SecretRef(variable, arn)
    key, stage, version_id = parts[ARN_PARTS:]
    if stage and version_id:
        raise SecretInjectionError(f"{SECRETS_ENV}: {variable} from {arn} names both a version stage and a version id;"
                                   " expected at most one of them")
    return SecretRef(variable, arn, key or None, stage or None, version_id or None)


def parse_secrets(text: str) -> list[SecretRef]:
    """MLFLOW_INFRA_SECRETS's JSON list, parsed and checked; an empty or blank value is no secrets."""
    if not text.strip():
        return []
    try:
        entries = json.loads(text)
    except json.JSONDecodeError:
        raise SecretInjectionError(f"{SECRETS_ENV} is not JSON; expected a list of"
                                   ' {"name": VARIABLE, "valueFrom": SECRET_ARN} objects') from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and set(e) == {"name", "valueFrom"} for e in entries):
        raise SecretInjectionError(f"{SECRETS_ENV} is not a list of {{\"name\": ..., \"valueFrom\": ...}} objects;"
                                   " expected exactly a container definition's `secrets`")
    refs = [parse_value_from(e["name"], e["valueFrom"]) for e in entries]
    seen: set[str] = set()
    for ref in refs:
        if ref.variable in seen:
            raise SecretInjectionError(f"{SECRETS_ENV} sets {ref.variable} twice (again from {ref.arn}); expected each"
                                       " variable once")
        seen.add(ref.variable)
    return refs


def secret_value(ref: SecretRef, secret_string: str) -> str:
    """The value `ref` selects from its secret's SecretString: the whole string, or one JSON key."""
    if ref.json_key is None:
        return secret_string
    try:
        data = json.loads(secret_string)
    except json.JSONDecodeError:
        data = None  # the decoder's message may quote the secret: never passed on
    if not isinstance(data, dict):
        raise SecretInjectionError(f"{ref.variable} from {ref.arn}: the secret is not a JSON object, so it has no key"
                                   f" {ref.json_key!r}; store JSON or drop the key from valueFrom")
    if ref.json_key not in data:
        raise SecretInjectionError(f"{ref.variable} from {ref.arn}: the secret has no JSON key {ref.json_key!r};"
                                   " add the key to the secret or fix valueFrom")
    value = data[ref.json_key]
    return value if isinstance(value, str) else json.dumps(value)


def fetch_secret_string(arn: str, version_stage: str | None = None, version_id: str | None = None) -> str:
    """The SecretString of `arn` (at a stage or id when given), read in the ARN's region with the
    ambient credentials (the instance role). Raises SecretInjectionError without the AWS message body."""
    import boto3  # lazily: only containers with MLFLOW_INFRA_SECRETS need it
    from botocore.exceptions import BotoCoreError, ClientError

    request = {"SecretId": arn}
    if version_stage:
        request["VersionStage"] = version_stage
    if version_id:
        request["VersionId"] = version_id
    try:
        response = boto3.client("secretsmanager", region_name=arn.split(":")[3]).get_secret_value(**request)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise SecretInjectionError(f"cannot read {arn}: {code}") from None
    except BotoCoreError as exc:
        raise SecretInjectionError(f"cannot read {arn}: {type(exc).__name__}") from None
    if "SecretString" not in response:
        raise SecretInjectionError(f"cannot read {arn}: it holds SecretBinary, not SecretString")
    return response["SecretString"]


Fetch = Callable[[str, "str | None", "str | None"], str]


def inject(env: Mapping[str, str], fetch: Fetch = fetch_secret_string) -> dict[str, str]:
    """`env` with every MLFLOW_INFRA_SECRETS entry's variable set from its secret (the secret wins,
    as on ECS), and MLFLOW_INFRA_SECRETS removed. Without it: `env`, copied."""
    resolved = {k: v for k, v in env.items() if k != SECRETS_ENV}
    refs = parse_secrets(env.get(SECRETS_ENV, ""))
    strings: dict[tuple[str, str | None, str | None], str] = {}
    for ref in refs:
        if ref.version not in strings:
            try:
                strings[ref.version] = fetch(*ref.version)
            except SecretInjectionError as exc:
                raise SecretInjectionError(f"{ref.variable}: {exc}") from None
        resolved[ref.variable] = secret_value(ref, strings[ref.version])
    return resolved
