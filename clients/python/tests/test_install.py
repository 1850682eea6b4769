"""`pip install ./clients/python` into a clean virtualenv, then the README's ten-line openai agent against a
stand-in upstream through a real node: no 429 reaches the upstream or the agent, and usage is refunded."""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.environ.get("QUOTAMESH_SKIP_VENV_TEST") == "1", reason="QUOTAMESH_SKIP_VENV_TEST=1")
def test_a_clean_virtualenv_installs_the_client_and_runs_the_example_agent(tmp_path, start_node, upstream_factory):
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(PACKAGE), "openai"],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    upstream = upstream_factory(4, 2.0)
    node = start_node({"openai": {"limit": 4, "window": "2s",
                                  "limits": {"tokens": {"limit": 1_000_000, "window": "30d"}}}})
    run = subprocess.run(
        [str(python), str(PACKAGE / "examples" / "openai_agent.py")], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, QUOTAMESH_API=node.api, OPENAI_BASE_URL=f"{upstream.url}/v1", OPENAI_API_KEY="test"))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split()[0] for line in lines[:12]] == [str(i) for i in range(12)]
    assert upstream.rejected == 0
    assert upstream.max_in_one_window() <= 4
    used = sum(u["total_tokens"] for u in upstream.usages)
    # Twelve calls reserved 100+ tokens each; the node kept only what they used.
    assert lines[12] == f"tokens consumed by this node: {used}"
    assert used < 12 * 100
