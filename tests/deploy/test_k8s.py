"""Kubernetes manifests: schema validation (kubernetes-validate --strict) and their wiring."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))


def resources() -> dict[str, dict]:
    return {doc["kind"]: doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc}


def container() -> dict:
    (spec,) = resources()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return spec


def test_manifests_pass_strict_schema_validation(validator) -> None:
    assert {p.name for p in MANIFESTS} >= {"deployment.yaml", "service.yaml", "hpa.yaml"}
    result = validator("kubernetes-validate", "--strict", *MANIFESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARN" not in result.stdout  # every kind had a schema


def test_schema_validation_rejects_a_bad_manifest(validator, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    spec = yaml.safe_load((K8S / "deployment.yaml").read_text())
    spec["spec"]["replicas"] = "three"
    spec["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/x"
    bad.write_text(yaml.safe_dump(spec))
    assert validator("kubernetes-validate", "--strict", bad).returncode != 0


def test_deployment_requests_a_gpu_and_probes_the_v2_health_endpoints() -> None:
    spec = container()
    assert spec["resources"]["limits"]["nvidia.com/gpu"] == 1
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert spec["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert ports["http"] == 8000 and spec["args"][-1] == "8000"
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert resources()["Deployment"]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_service_hpa_and_monitors_select_the_deployment() -> None:
    found = resources()
    pod_labels = found["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert found["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert found["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    target = found["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", found["Deployment"]["metadata"]["name"])
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    monitor = yaml.safe_load((K8S / "monitoring" / "servicemonitor.yaml").read_text())
    service_labels = found["Service"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    assert monitor["spec"]["endpoints"][0]["port"] == found["Service"]["spec"]["ports"][0]["name"]


def test_scrape_annotations_match_the_container_and_the_prometheus_config(validator, tmp_path: Path) -> None:
    annotations = resources()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == container()["ports"][0]["containerPort"]
    config = yaml.safe_load(resources()["ConfigMap"]["data"]["prometheus.yml"])
    relabels = config["scrape_configs"][0]["relabel_configs"]
    assert relabels[0]["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    for relabel in relabels:
        re.compile(relabel.get("regex", "(.*)"))
    # Debian's promtool is built without Kubernetes discovery: check the rest with a static target.
    job = config["scrape_configs"][0]
    job["static_configs"] = [{"targets": ["robeserve:8000"]}]
    del job["kubernetes_sd_configs"]
    static = tmp_path / "prometheus.yml"
    static.write_text(yaml.safe_dump(config))
    result = validator("promtool", "check", "config", "--syntax-only", static)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grace_period_covers_prestop_drain_and_graceful_shutdown() -> None:
    pod = resources()["Deployment"]["spec"]["template"]["spec"]
    spec = container()
    env = {item["name"]: item.get("value") for item in spec.get("env", [])}
    pre_stop = spec["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(env["ROBESERVE_DRAIN_DELAY_S"]) + float(env["ROBESERVE_GRACEFUL_TIMEOUT_S"])
    budget = float(pre_stop[1]) + drain
    assert pod["terminationGracePeriodSeconds"] >= budget + 5, (pod["terminationGracePeriodSeconds"], budget)
