"""The EC2 instances' ECR login (infra/aws/ecr_login.py, standard library only): its Signature Version 4
is botocore's, and the program, run as the user data runs it, gets the password through IMDSv2 and
ECR's API (both served here by stand-ins on 127.0.0.1)."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from helpers import ROOT
from infra.aws import ecr_login

PROGRAM = ROOT / "infra" / "aws" / "ecr_login.py"
NOW = datetime.datetime(2026, 11, 27, 12, 30, 45, tzinfo=datetime.timezone.utc)
CREDENTIALS = {"AccessKeyId": "ASIAEXAMPLEKEY", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
               "Token": "IQoJb3JpZ2luX2VjEXAMPLETOKEN"}


def botocore_authorization(host: str, region: str, body: str, credentials: dict, headers: dict) -> str:
    request = AWSRequest(method="POST", url=f"https://{host}/", data=body.encode(),
                         headers={"Content-Type": headers["content-type"], "X-Amz-Target": headers["x-amz-target"]})
    auth = SigV4Auth(Credentials(credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials.get("Token")), "ecr", region)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        auth.add_auth(request)
    return request.headers["Authorization"]


@pytest.mark.parametrize("credentials", [CREDENTIALS, {k: v for k, v in CREDENTIALS.items() if k != "Token"}],
                         ids=["role-session", "no-session-token"])
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3"])
def test_the_signature_is_botocores(credentials, region):
    host = f"api.ecr.{region}.amazonaws.com"
    ours = ecr_login.signed_headers(host, region, "{}", credentials, NOW)
    assert ours["authorization"] == botocore_authorization(host, region, "{}", credentials, ours)
    assert ours["x-amz-date"] == "20261127T123045Z" and ("x-amz-security-token" in ours) == ("Token" in credentials)


class StandIns(BaseHTTPRequestHandler):
    """IMDSv2 (token, role name, role credentials) and ECR's GetAuthorizationToken, as AWS answers them."""

    received: list[tuple[dict, str]] = []

    def do_PUT(self):  # noqa: N802
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self._answer(200, "imds-session-token")
        return self._answer(400, "")

    def do_GET(self):  # noqa: N802
        if self.headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
            return self._answer(401, "")
        if self.path == "/latest/meta-data/iam/security-credentials/":
            return self._answer(200, "mlflow-prod-svc-api-task\n")
        if self.path == "/latest/meta-data/iam/security-credentials/mlflow-prod-svc-api-task":
            return self._answer(200, json.dumps({"Code": "Success", **CREDENTIALS}))
        return self._answer(404, "")

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        StandIns.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        token = base64.b64encode(b"AWS:ecr-registry-password").decode()
        return self._answer(200, json.dumps({"authorizationData": [{"authorizationToken": token, "proxyEndpoint": "https://x"}]}))

    def _answer(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_ins():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIns)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    StandIns.received = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(url: str, *args: str, imds: str | None = None) -> subprocess.CompletedProcess:
    env = {"ECR_LOGIN_IMDS": imds or url, "ECR_LOGIN_ENDPOINT": url, "PATH": "/usr/bin:/bin"}
    # -I: as on the instance, nothing but the standard library (no site-packages, no PYTHON* variables)
    return subprocess.run([sys.executable, "-I", str(PROGRAM), *args], env=env, capture_output=True, text=True, timeout=60)


def test_the_program_prints_the_registry_password_from_a_signed_request(stand_ins):
    result = run(stand_ins, "us-east-1")
    assert (result.returncode, result.stdout, result.stderr) == (0, "ecr-registry-password", "")
    [(headers, body)] = StandIns.received
    assert body == "{}" and headers["x-amz-target"] == "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
    assert headers["x-amz-security-token"] == CREDENTIALS["Token"]
    signed_at = datetime.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    host = stand_ins.split("://", 1)[1]
    request = AWSRequest(method="POST", url=f"https://{host}/", data=b"{}",
                         headers={"Content-Type": headers["content-type"], "X-Amz-Target": headers["x-amz-target"]})
    with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
        SigV4Auth(Credentials(CREDENTIALS["AccessKeyId"], CREDENTIALS["SecretAccessKey"], CREDENTIALS["Token"]),
                  "ecr", "us-east-1").add_auth(request)
    assert headers["authorization"] == request.headers["Authorization"], "what ECR would verify"


def test_a_failure_is_one_line_without_credentials(stand_ins):
    unreachable = run(stand_ins, "us-east-1", imds="http://127.0.0.1:9")
    assert unreachable.returncode == 1 and unreachable.stdout == ""
    assert unreachable.stderr.count("\n") == 1 and "could not get an ECR token with the instance role" in unreachable.stderr
    assert CREDENTIALS["SecretAccessKey"] not in unreachable.stderr
    usage = run(stand_ins)
    assert usage.returncode == 2 and usage.stderr == "usage: ecr-login.py REGION\n"
