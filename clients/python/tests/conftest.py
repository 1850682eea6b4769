"""Fixtures: a real `quotamesh run` process on loopback (its binary from `$QUOTAMESH_BINARY`, else the
repository's debug build) and a stand-in upstream."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from upstream import StandInUpstream  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[3]


def binary() -> Path:
    path = Path(os.environ.get("QUOTAMESH_BINARY", REPOSITORY / ".build" / "debug" / "quotamesh"))
    if not path.is_file():
        pytest.fail(f"no quotamesh binary at {path}: run `swift build --product quotamesh` or set QUOTAMESH_BINARY")
    # Absolute: each node runs in a folder of its own.
    return path.resolve()


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Node:
    """One node process, stopped by its process id."""

    def __init__(self, folder: Path, services: Dict[str, Any], token: Optional[str] = None):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Peers").mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps({"services": services}))
        self.api = f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"
        self.url = f"http://{self.api}"
        self.token = token
        arguments = [str(binary()), "run", "--config", str(folder / "config.json"),
                     "--identity", str(folder / "identity"), "--peers", str(folder / "Peers"),
                     "--state", str(folder / "state"), "--gossip", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
                     "--api", self.api]
        if token:
            token_file = folder / "api-token"
            token_file.write_text(token)
            token_file.chmod(0o600)
            arguments += ["--api-token-file", str(token_file)]
        self.log = open(folder / "node.log", "wb")
        self.process = subprocess.Popen(arguments, stdout=self.log, stderr=subprocess.STDOUT, cwd=folder)
        self.wait_until_serving()

    def wait_until_serving(self, seconds: float = 30.0) -> None:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the node exited with {self.process.returncode}: {self.log_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", headers=headers, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the node did not serve within {seconds} s: {self.log_text()}")

    def quota(self, service: str) -> Dict[str, Any]:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.get(f"{self.url}/v1/quota/{service}", headers=headers).json()

    def consumed(self, service: str, dimension: str) -> int:
        """What this node's agents consumed of `dimension` in the current window."""
        for entry in self.quota(service)["limits"]:
            if entry["name"] == dimension:
                return entry["consumed"]["local"]
        raise AssertionError(f"{service} has no {dimension} dimension: {self.quota(service)}")

    def log_text(self) -> str:
        self.log.flush()
        return (self.folder / "node.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    nodes: List[Node] = []

    def start(services: Dict[str, Any], token: Optional[str] = None) -> Node:
        node = Node(tmp_path / f"node{len(nodes)}", services, token)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


@pytest.fixture
def upstream_factory() -> Iterator[Callable[[int, float], StandInUpstream]]:
    upstreams: List[StandInUpstream] = []

    def make(limit: int, window: float) -> StandInUpstream:
        upstream = StandInUpstream(limit, window)
        upstreams.append(upstream)
        return upstream

    yield make
    for upstream in upstreams:
        upstream.stop()
