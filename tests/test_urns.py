"""Resource names never change silently: a changed URN makes Pulumi replace the resource, and for the
primary that means a new, empty tracking database. tests/data/urns/<env>.txt holds every URN the
shipped stacks render to (recorded before the layout moved into infra/spec, planning, aws, ...; the
moves kept every one of them).

A new resource adds its URN in the same change. A deliberate rename updates the file too and gives
the renamed resource `aliases=[pulumi.Alias(name=OLD)]` so deployed stacks move instead of replacing it.
"""

from __future__ import annotations

import pytest

from helpers import ROOT, SHIPPED, render

SNAPSHOTS = ROOT / "tests" / "data" / "urns"


@pytest.mark.parametrize("env", [*SHIPPED, "local"])
def test_shipped_stacks_keep_their_urns(env):
    _, _, urns, _ = render(env)
    recorded = set((SNAPSHOTS / f"{env}.txt").read_text().split())
    rendered = set(urns)
    assert rendered - recorded == set() and recorded - rendered == set(), (
        f"URNs changed for {env}: new {sorted(rendered - recorded)}, gone {sorted(recorded - rendered)};"
        " a gone URN is a replaced (for the database: emptied) resource")
    assert len(urns) == len(rendered), "two resources share a URN"
