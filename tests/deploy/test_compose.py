"""docker compose file: the Compose Specification schema, plus the wiring between its services."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_spec_schema(validator) -> None:
    result = validator("check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_rejects_a_bad_file(validator, tmp_path: Path) -> None:
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  web:\n    image: nginx\n    ports: 8080\n    restart: sometimes-maybe\n")
    result = validator("check-jsonschema", "--builtin-schema", "vendor.compose-spec", bad)
    assert result.returncode != 0


def test_service_reserves_one_gpu_and_mounts_models_read_only() -> None:
    service = compose()["services"]["robeserve"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "../models:/models:ro" in service["volumes"]
    assert service["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def test_bind_mounted_files_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"


def test_prometheus_scrapes_the_service_and_loads_the_mounted_rules() -> None:
    services = compose()["services"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in services and f"{port}:{port}" in services[host]["ports"]
    mounted = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert set(config["rule_files"]) <= mounted


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/robeserve.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    source = next(src for src, dst in mounts.items() if dst == path)
    assert list((DEPLOY / source).glob("*.json"))
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    url = datasources["datasources"][0]["url"]
    assert url == "http://prometheus:9090" and "9090:9090" in compose()["services"]["prometheus"]["ports"]
