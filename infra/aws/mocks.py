"""Pulumi's official unit-test mocks, recording every resource: the offline policy check and the tests render stacks with them."""

from __future__ import annotations

import pulumi

from ..endpoints import DATABASE_PORT


class RecordingMocks(pulumi.runtime.Mocks):
    """`stored`: {resource name: {property: value}} kept from an earlier run, as the engine keeps a
    property under `ignore_changes` (the new input is replaced with the stored one before the program
    sees the output). The mocks cannot see resource options, so the caller names what to keep."""

    def __init__(self, stored: dict[str, dict] | None = None):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.stored = stored or {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(args)
        name = args.name
        state = {**dict(args.inputs), **self.stored.get(name, {})}
        state.setdefault("arn", f"arn:aws:mock:us-east-1:123456789012:{args.typ.split(':')[-1].lower()}/{name}")
        state.setdefault("name", name)
        state.setdefault("id", f"{name}-id")
        if args.typ == "aws:rds/instance:Instance":
            state.update(identifier=name, address=f"{name}.abc123.us-east-1.rds.amazonaws.com", port=DATABASE_PORT)
        if args.typ == "aws:lb/loadBalancer:LoadBalancer":
            state.update(dnsName=f"{name}.elb.amazonaws.com", arnSuffix=f"app/{name}/0123")
        if args.typ == "aws:secretsmanager/secret:Secret":  # the form ECS `valueFrom` and the EC2 entrypoint parse
            state.update(arn=f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf")
        if args.typ == "aws:lb/targetGroup:TargetGroup":
            state.update(arnSuffix=f"targetgroup/{name}/0456")
        if args.typ == "aws:ecr/repository:Repository":
            state.update(repositoryUrl=f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}")
        if args.typ == "aws:s3/bucket:Bucket":
            state.setdefault("bucket", f"{name}-bucket")
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state.update(latestVersion=1)
        if args.typ == "aws:rds/cluster:Cluster":
            state.update(clusterIdentifier=name, endpoint=f"{name}.cluster-abc123.us-east-1.rds.amazonaws.com",
                         readerEndpoint=f"{name}.cluster-ro-abc123.us-east-1.rds.amazonaws.com", port=DATABASE_PORT)
        if args.typ == "aws:rds/clusterInstance:ClusterInstance":
            state.update(identifier=name, endpoint=f"{name}.abc123.us-east-1.rds.amazonaws.com", port=DATABASE_PORT)
        if args.typ == "aws:rds/proxyEndpoint:ProxyEndpoint":
            state.update(endpoint=f"{name}.endpoint.proxy-abc.us-east-1.rds.amazonaws.com")
        if args.typ == "aws:rds/proxy:Proxy":
            state.update(endpoint=f"{name}.proxy-abc.us-east-1.rds.amazonaws.com")
        return f"{name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": "us-east-1", "region": "us-east-1", "id": "us-east-1"}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/mock", "id": "123456789012",
                    "userId": "AIDAMOCK"}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws", "reverseDnsPrefix": "com.amazonaws"}
        return {}

    def of_type(self, typ: str):
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name_suffix: str = ""):
        found = [r for r in self.of_type(typ) if r.name.endswith(name_suffix)]
        assert len(found) == 1, f"{typ} *{name_suffix}: {[r.name for r in found]}"
        return found[0]


def render_stack(spec, project: str = "mlflow-tracking", capacity=None, mocks: RecordingMocks | None = None):
    """Build MlflowTracking for a validated spec under the mocks, as `pulumi preview` would.

    Returns the mocks (every resource's inputs), the component, the URNs, and the resolved
    outputs (tracking_uri, ui_url, primary_endpoint, replica_endpoints, client sg, bucket, client_environment)."""
    from .tracking import MlflowTracking, MlflowTrackingArgs

    mocks = mocks or RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=project, stack=spec.name, preview=False)
    holder: dict = {}

    @pulumi.runtime.test
    def build():
        component = MlflowTracking(f"mlflow-{spec.name}", MlflowTrackingArgs(spec=spec, plan=capacity))
        holder["component"] = component
        return pulumi.Output.all(component.tracking_uri, component.ui_url, component.primary_endpoint,
                                 component.replica_endpoints, component.client_security_group_id,
                                 component.artifact_bucket, component.client_environment).apply(
            lambda v: holder.__setitem__("outputs", v))

    build()
    monitor = pulumi.runtime.settings.SETTINGS.monitor
    return mocks, holder["component"], list(monitor.resources), holder["outputs"]
