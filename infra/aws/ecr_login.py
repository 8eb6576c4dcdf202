"""Print an ECR registry password for `docker login`, with the instance role, Python standard library only.

Runs on an EC2 instance at boot (the user data writes this file and runs it with the AMI's own
python3, which its dnf needs), before any image is there: no AWS CLI, no credential helper, no
package to install. It reads the instance role's credentials from the instance metadata (IMDSv2),
signs ECR's GetAuthorizationToken with Signature Version 4, and prints the password of the token's
`AWS:password` pair:

  python3 ecr-login.py REGION | docker login --username AWS --password-stdin ACCOUNT.dkr.ecr.REGION.amazonaws.com

ECR is reached through the VPC's `ecr.api` endpoint (private DNS), so no internet either. Exit 1 with
one line on stderr when any step fails (the credentials and token never appear in it).
Kept importable and free of this package's imports: tests sign with it and compare with botocore.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import sys
import urllib.error
import urllib.request

IMDS = os.environ.get("ECR_LOGIN_IMDS", "http://169.254.169.254")
TIMEOUT_S = 10
TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"


def imds_credentials(imds=IMDS):
    """The instance role's AccessKeyId, SecretAccessKey and Token (IMDSv2: a session token first)."""
    token_request = urllib.request.Request(f"{imds}/latest/api/token", method="PUT",
                                           headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    with urllib.request.urlopen(token_request, timeout=TIMEOUT_S) as response:
        token = response.read().decode()
    headers = {"X-aws-ec2-metadata-token": token}
    base = f"{imds}/latest/meta-data/iam/security-credentials/"
    with urllib.request.urlopen(urllib.request.Request(base, headers=headers), timeout=TIMEOUT_S) as response:
        role = response.read().decode().split()[0]
    with urllib.request.urlopen(urllib.request.Request(f"{base}{role}", headers=headers), timeout=TIMEOUT_S) as response:
        return json.loads(response.read().decode())


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_headers(host, region, body, credentials, now):
    """The headers of a SigV4-signed POST of `body` to ECR's JSON API at `host` (AWS General Reference,
    "Signature Version 4 signing process")."""
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {"content-type": "application/x-amz-json-1.1", "host": host, "x-amz-date": stamp, "x-amz-target": TARGET}
    if credentials.get("Token"):
        headers["x-amz-security-token"] = credentials["Token"]
    names = sorted(headers)
    canonical = "\n".join(["POST", "/", "", *(f"{n}:{headers[n]}" for n in names), "", ";".join(names),
                           hashlib.sha256(body.encode()).hexdigest()])
    scope = f"{day}/{region}/ecr/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(f"AWS4{credentials['SecretAccessKey']}".encode(), day)
    for part in (region, "ecr", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={credentials['AccessKeyId']}/{scope},"
                                f" SignedHeaders={';'.join(names)}, Signature={signature}")
    return headers


def registry_password(region, credentials, endpoint=None, now=None):
    """GetAuthorizationToken, decoded: the password of its `AWS:password` pair."""
    endpoint = endpoint or f"https://api.ecr.{region}.amazonaws.com"
    host = endpoint.split("://", 1)[1].rstrip("/")
    body = "{}"
    headers = signed_headers(host, region, body, credentials, now or datetime.datetime.now(datetime.timezone.utc))
    request = urllib.request.Request(f"{endpoint}/", data=body.encode(), method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        data = json.loads(response.read().decode())
    token = data["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    if user != "AWS" or not password:
        raise ValueError("ECR answered a token that is not an AWS:password pair")
    return password


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: ecr-login.py REGION", file=sys.stderr)
        return 2
    try:
        password = registry_password(args[0], imds_credentials(), os.environ.get("ECR_LOGIN_ENDPOINT"))
    except urllib.error.HTTPError as exc:
        print(f"ecr-login: {exc.url} answered {exc.code}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, IndexError) as exc:
        print(f"ecr-login: {type(exc).__name__}: could not get an ECR token with the instance role", file=sys.stderr)
        return 1
    sys.stdout.write(password)
    return 0


if __name__ == "__main__":
    sys.exit(main())
