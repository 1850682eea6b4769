"""The deployment files, exercised where this machine allows: the systemd unit passes `systemd-analyze
verify` and its ExecStart starts a node; the Kubernetes sidecar's manifest has the shape it claims and
its node container's command, environment and ConfigMap start a node; the Containerfile's runtime
command and environment start a node. (Building the image needs a container engine, which this machine
does not run: that part is not exercised here.)"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import httpx
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1]
REPOSITORY = DEPLOY.parent


def binary() -> str:
    path = Path(os.environ.get("QUOTAMESH_BINARY", REPOSITORY / ".build" / "debug" / "quotamesh"))
    if not path.is_file():
        pytest.fail(f"no quotamesh binary at {path}: run `swift build --product quotamesh` or set QUOTAMESH_BINARY")
    return str(path.resolve())


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serves(arguments: List[str], environment: Dict[str, str], folder: Path, api: str) -> Dict:
    """Starts `arguments` (a node) in `folder`, waits for `/healthz` at `api`, stops it by its pid."""
    log = open(folder / "node.log", "wb")
    process = subprocess.Popen(arguments, cwd=folder, env=dict(os.environ, **environment), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, (folder / "node.log").read_text()
            try:
                answer = httpx.get(f"http://{api}/healthz", timeout=1)
                if answer.status_code == 200:
                    return answer.json()
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("the node did not serve: " + (folder / "node.log").read_text())
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def node_config(text: str, folder: Path) -> Path:
    """The configuration with loopback addresses on free ports, written to `folder`."""
    config = json.loads(text)
    config["gossip"] = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    config["api"] = f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    path = folder / "node.json"
    path.write_text(json.dumps(config))
    return path


def unit_settings(text: str) -> Dict[str, List[str]]:
    settings: Dict[str, List[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_systemd_unit_verifies_and_its_exec_start_runs_a_node(tmp_path):
    unit = (DEPLOY / "systemd" / "quotamesh.service").read_text()
    settings = unit_settings(unit)
    for hardening in ["DynamicUser", "StateDirectory", "ProtectSystem", "NoNewPrivileges", "PrivateTmp"]:
        assert hardening in settings, f"{hardening} is set"
    assert settings["ProtectSystem"] == ["strict"]
    exec_start = shlex.split(settings["ExecStart"][0])
    assert exec_start[:2] == ["/usr/local/bin/quotamesh", "run"]
    if shutil.which("systemd-analyze"):
        local = tmp_path / "quotamesh.service"
        local.write_text(unit.replace("/usr/local/bin/quotamesh", binary()))
        verified = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
        problems = [line for line in (verified.stdout + verified.stderr).splitlines() if "quotamesh.service" in line]
        assert verified.returncode == 0 and not problems, verified.stdout + verified.stderr
    # ExecStart as systemd runs it: its variables set, the configuration file the unit names.
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    config = node_config((DEPLOY / "systemd" / "node.json").read_text(), tmp_path)
    arguments = [binary()] + [part.replace("${STATE_DIRECTORY}", str(state)) for part in exec_start[1:]]
    environment = dict(item.split("=", 1) for item in settings["Environment"])
    assert environment["QUOTAMESH_CONFIG"] == "/etc/quotamesh/node.json"
    environment["QUOTAMESH_CONFIG"] = str(config)
    health = serves(arguments, environment, tmp_path, json.loads(config.read_text())["api"])
    assert health["status"] == "ok"
    assert (state / "identity").is_file()
    assert oct((state / "identity").stat().st_mode & 0o777) == "0o600"


def test_the_kubernetes_sidecar_shares_the_pods_loopback_and_its_node_container_runs(tmp_path):
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "agent-with-quotamesh.yaml").read_text()))
    kinds = {document["kind"]: document for document in documents}
    assert set(kinds) == {"Service", "ConfigMap", "StatefulSet"}
    assert kinds["Service"]["spec"]["clusterIP"] == "None"
    assert kinds["Service"]["spec"]["ports"][0]["protocol"] == "UDP"
    pod = kinds["StatefulSet"]["spec"]["template"]["spec"]
    containers = {container["name"]: container for container in pod["containers"]}
    assert set(containers) == {"agent", "quotamesh"}
    agent_env = {item["name"]: item["value"] for item in containers["agent"]["env"]}
    config_text = kinds["ConfigMap"]["data"]["node.json"]
    config = json.loads(config_text)
    assert agent_env["QUOTAMESH_API"] == config["api"] == "127.0.0.1:9721", "the agent asks its node on the pod's loopback"
    assert config["vouching"] == "introduced-by: hub"
    join = pod["initContainers"][0]["args"][0]
    assert "--name hub" in join, "the inviter is named as the vouching setting names it"
    volumes = {volume["name"] for volume in pod["volumes"]} | {claim["metadata"]["name"] for claim in kinds["StatefulSet"]["spec"]["volumeClaimTemplates"]}
    for container in list(containers.values()) + pod["initContainers"]:
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{container['name']} mounts {mount['name']}"
    # The node container as the pod runs it: its arguments, its environment, the ConfigMap mounted.
    node = containers["quotamesh"]
    state = tmp_path / "var-lib-quotamesh"
    state.mkdir()
    mounted = node_config(config_text, tmp_path)
    arguments = [binary()] + [argument.replace("/var/lib/quotamesh", str(state)) for argument in node["args"]]
    environment = {item["name"]: item["value"].replace("/etc/quotamesh/node.json", str(mounted)) for item in node["env"]}
    health = serves(arguments, environment, tmp_path, json.loads(mounted.read_text())["api"])
    assert health["status"] == "ok"


def test_the_containerfiles_runtime_command_runs_a_node(tmp_path):
    text = (DEPLOY / "container" / "Containerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#") and not line.startswith(" ")]
    stages = [line for line in instructions if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    for line in instructions:
        if line.startswith("COPY ") and "--from=" not in line:
            source = line.split()[1]
            assert (REPOSITORY / source).exists(), f"{source} exists in the repository"
    assert "USER 10001:10001" in instructions
    assert "EXPOSE 9720/udp" in instructions
    entrypoint = json.loads(next(line for line in instructions if line.startswith("ENTRYPOINT "))[len("ENTRYPOINT "):])
    command = json.loads(next(line for line in instructions if line.startswith("CMD "))[len("CMD "):])
    environment = dict(re.match(r"ENV (\S+)=(\S+)", line).groups() for line in instructions if line.startswith("ENV "))
    assert entrypoint == ["/usr/local/bin/quotamesh"] and command[0] == "run"
    state = tmp_path / "var-lib-quotamesh"
    state.mkdir()
    config = node_config((DEPLOY / "systemd" / "node.json").read_text(), tmp_path)
    environment["QUOTAMESH_CONFIG"] = str(config)
    arguments = [binary()] + [argument.replace("/var/lib/quotamesh", str(state)) for argument in command]
    assert serves(arguments, environment, tmp_path, json.loads(config.read_text())["api"])["status"] == "ok"
