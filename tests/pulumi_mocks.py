"""Pulumi's official unit-test mocks, recording every resource so tests can assert on its inputs."""

from __future__ import annotations

import pulumi


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(args)
        name = args.name
        state = dict(args.inputs)
        state.setdefault("arn", f"arn:aws:mock:us-east-1:123456789012:{args.typ.split(':')[-1].lower()}/{name}")
        state.setdefault("name", name)
        state.setdefault("id", f"{name}-id")
        if args.typ == "aws:rds/instance:Instance":
            state.update(identifier=name, address=f"{name}.abc123.us-east-1.rds.amazonaws.com", port=5432,
                         masterUserSecrets=[{"secretArn": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!{name}",
                                             "kmsKeyId": "k", "secretStatus": "active"}])
        if args.typ == "aws:lb/loadBalancer:LoadBalancer":
            state.update(dnsName=f"{name}.elb.amazonaws.com", arnSuffix=f"app/{name}/0123")
        if args.typ == "aws:ecr/repository:Repository":
            state.update(repositoryUrl=f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}")
        if args.typ == "aws:s3/bucket:Bucket":
            state.setdefault("bucket", f"{name}-bucket")
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state.update(latestVersion=1)
        if args.typ == "aws:rds/proxy:Proxy":
            state.update(endpoint=f"{name}.proxy-abc.us-east-1.rds.amazonaws.com")
        return f"{name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": "us-east-1", "region": "us-east-1", "id": "us-east-1"}
        return {}

    def of_type(self, typ: str):
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name_suffix: str = ""):
        found = [r for r in self.of_type(typ) if r.name.endswith(name_suffix)]
        assert len(found) == 1, f"{typ} *{name_suffix}: {[r.name for r in found]}"
        return found[0]
