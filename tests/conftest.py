from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from helpers import ROOT


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    """Environment files are addressed as stacks/<env>.yaml, as users type them."""
    monkeypatch.chdir(ROOT)


@pytest.fixture
def stack_dir(tmp_path):
    """A scratch stacks/ directory with a copy of base.yaml; write(name, text) adds a file."""
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "base.yaml").write_text((ROOT / "stacks" / "base.yaml").read_text())

    def write(name: str, text: str) -> Path:
        path = stacks / name
        path.write_text(textwrap.dedent(text))
        return path

    write.dir = stacks
    return write
