"""The served GPU path (issue 12): ``dlrm-robe`` on the device and ``dlrm-full`` in hybrid placement, one
service, the project's load generator, the ratio read from the service's own ``/metrics``.

    python -m loadtest.gpu_serve prepare --shape terabyte --rows-scale 0.1 --work-dir build/gpu_serve
    python -m loadtest.gpu_serve drive --work-dir build/gpu_serve --seconds 20 --clients 32

``prepare`` exports both models with random weights (throughput needs no trained weights) at the shape's
architecture, the full tables' rows multiplied by ``--rows-scale`` so they fit host memory (the result says
the scale; the ROBE array keeps its size). ``drive`` starts ``python -m service`` on the repository with
``--placement auto,dlrm-full=hybrid,dlrm-robe=device`` (forced: at a reduced scale the tables might fit the
device budget, and the comparison is the host-resident setting), checks the placements in
``GET /v2/models/{m}``, warms up, then loads each model in turn with the same closed-loop clients
(``loadtest.service_bench.load``), alternating (robe full full robe ...), and reads samples/s from
``robeserve_inferences_total`` and the per-stage histograms (``robeserve_stage_duration_seconds``) of
every phase. Writes ``gpu_serve.json`` and ``gpu_serve.md``. ``loadtest/gpu_serve.sh`` runs both steps with
onnxruntime-gpu; ``--dry-run`` (tiny shape, CPU provider) checks everything on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from loadtest.service_bench.load import build_request, closed_loop, v2_ctr_body
from loadtest.service_process import HOST, ServiceProcess, http_get

logger = logging.getLogger(__name__)
MODELS = ("dlrm-robe", "dlrm-full")
PLACEMENT = "auto,dlrm-full=hybrid,dlrm-robe=device"


def prepare(shape_name: str, rows_scale: float, work_dir: Path) -> dict[str, Any]:
    """Export ``dlrm-robe`` and ``dlrm-full`` (random weights) into ``work_dir/models``."""
    from loadtest.engine_models import Method, export_model, to_repository
    from loadtest.shapes import get_shape

    shape = get_shape(shape_name).scaled(rows_scale)
    info: dict[str, Any] = {
        "shape": shape.name.value,
        "rows_scale": shape.rows_scale,
        "table_bytes": shape.table_bytes,
        "robe_bytes": shape.robe_bytes,
        "models": {},
    }
    for method, name in ((Method.ROBE, "dlrm-robe"), (Method.FULL, "dlrm-full")):
        exported = export_model(method, shape, work_dir / "export" / method.value, quantize=False)
        to_repository(exported, shape, work_dir / "models", name)
        info["models"][name] = {"parameter_bytes": exported.parameter_bytes}
    (work_dir / "prepared.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def scrape(port: int) -> dict[str, Any]:
    """Samples scored per model and the stage histograms (sum, count, buckets) per (model, stage)."""
    _, body = http_get(f"http://{HOST}:{port}/metrics")
    samples: dict[str, float] = {}
    stages: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            model = sample.labels.get("model", "")
            if sample.name == "robeserve_inferences_total":
                samples[model] = samples.get(model, 0.0) + sample.value
            elif sample.name.startswith("robeserve_stage_duration_seconds"):
                key = f"{model}/{sample.labels['stage']}"
                entry = stages.setdefault(key, {"sum": 0.0, "count": 0.0, "buckets": {}})
                if sample.name.endswith("_sum"):
                    entry["sum"] += sample.value
                elif sample.name.endswith("_count"):
                    entry["count"] += sample.value
                elif sample.name.endswith("_bucket"):
                    entry["buckets"][sample.labels["le"]] = sample.value
    return {"samples": samples, "stages": stages}


def requests_for(shape_name: str, rows_scale: float, batch: int, count: int = 8) -> list[bytes]:
    """v2 infer bodies of ``batch`` samples with ids of the models' vocabulary (1..rows per feature)."""
    from loadtest.engine import inputs_for
    from loadtest.shapes import get_shape

    shape = get_shape(shape_name).scaled(rows_scale)
    return [v2_ctr_body(dense, ids) for dense, ids in inputs_for(shape, batch)[:count]]


def start_service(
    repository: Path, port: int, providers: str, log: Path, extra_env: dict[str, str]
) -> ServiceProcess:
    """``python -m service`` on the repository with the forced placements (onnxruntime-gpu's CUDA libraries
    preloaded when it has them)."""
    env = {"ROBESERVE_POLL_INTERVAL_S": "0", "ROBESERVE_ALLOW_SPINNING": "false", **extra_env}
    args = ["--providers", providers, "--placement", PLACEMENT]
    return ServiceProcess(repository, port, log, env, args, preload_cuda=True)


def drive(
    work_dir: Path,
    port: int,
    providers: str,
    seconds: float,
    clients: int,
    batch: int,
    rounds: int,
    warmup_s: float,
    load_timeout_s: float,
) -> dict[str, Any]:
    """Serve both models, load them in turn, and read the ratio and stage times from /metrics."""
    prepared = json.loads((work_dir / "prepared.json").read_text())
    service = start_service(
        work_dir / "models",
        port,
        providers,
        work_dir / "service.log",
        {"ROBESERVE_MAX_BATCH_SIZE": str(max(batch, 1024)), "ROBESERVE_MAX_INSTANCES": str(batch)},
    )
    result: dict[str, Any] = {
        "prepared": prepared,
        "providers": providers,
        "placement_setting": PLACEMENT,
        "clients": clients,
        "samples_per_request": batch,
        "seconds": seconds,
        "phases": [],
    }
    try:
        service.wait_ready(load_timeout_s)
        for name in MODELS:
            status, body = http_get(f"http://{HOST}:{port}/v2/models/{name}")
            result.setdefault("placement", {})[name] = (
                json.loads(body).get("placement") if status == 200 else None
            )
        _, body = http_get(f"http://{HOST}:{port}/v1/status")
        result["status"] = {
            m["name"]: {
                k: m.get(k)
                for k in ("placement", "placement_reason", "device_bytes", "table_bytes", "parameter_bytes")
            }
            for m in json.loads(body)["models"]
        }
        requests = {
            name: [
                build_request(HOST, f"/v2/models/{name}/infer", body_)
                for body_ in requests_for(prepared["shape"], prepared["rows_scale"], batch)
            ]
            for name in MODELS
        }
        for name in MODELS:  # warm-up: page in the tables, fill the arenas
            asyncio.run(closed_loop(HOST, port, requests[name], clients, warmup_s))
        order = [m for i in range(rounds) for m in (MODELS if i % 2 == 0 else MODELS[::-1])]
        for name in order:
            before = scrape(port)
            load = asyncio.run(closed_loop(HOST, port, requests[name], clients, seconds))
            after = scrape(port)
            scored = after["samples"].get(name, 0.0) - before["samples"].get(name, 0.0)
            stages = {}
            for key, entry in after["stages"].items():
                if key.startswith(name + "/"):
                    old = before["stages"].get(key, {"sum": 0.0, "count": 0.0, "buckets": {}})
                    count = entry["count"] - old["count"]
                    if count <= 0:
                        continue
                    stages[key.split("/", 1)[1]] = {
                        "count": count,
                        "mean_ms": 1e3 * (entry["sum"] - old["sum"]) / count if count else None,
                        "buckets": {
                            le: v - old["buckets"].get(le, 0.0) for le, v in entry["buckets"].items()
                        },
                    }
            phase = {
                "model": name,
                "samples_per_s": scored / load.seconds,
                "failed": load.failed,
                "statuses": load.statuses,
                "stages": stages,
                "p50_ms": 1e3 * statistics.median(load.latencies_s) if load.latencies_s else None,
            }
            logger.info(
                "%s: %.0f samples/s (%d failed) %s",
                name,
                phase["samples_per_s"],
                load.failed,
                {k: v["mean_ms"] for k, v in stages.items()},
            )
            result["phases"].append(phase)
            (work_dir / "gpu_serve.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        service.stop()
    medians = {
        name: statistics.median([p["samples_per_s"] for p in result["phases"] if p["model"] == name])
        for name in MODELS
        if any(p["model"] == name for p in result["phases"])
    }
    result["median_samples_per_s"] = medians
    if len(medians) == 2 and medians["dlrm-full"] > 0:
        result["ratio_robe_vs_full"] = medians["dlrm-robe"] / medians["dlrm-full"]
    (work_dir / "gpu_serve.json").write_text(json.dumps(result, indent=2) + "\n")
    (work_dir / "gpu_serve.md").write_text(render(result))
    return result


def render(result: dict[str, Any]) -> str:
    prepared = result["prepared"]
    lines = [
        "# Served GPU path: dlrm-robe (device) vs dlrm-full (hybrid)",
        "",
        f"Shape {prepared['shape']} with table rows x{prepared['rows_scale']:g} "
        f"({prepared['table_bytes']:,} bytes of full tables); providers {result['providers']}; "
        f"placements {result.get('placement')}; "
        f"{result['clients']} closed-loop clients, {result['samples_per_request']} samples per request.",
        "",
        "| phase | model | samples/s | failed | p50 ms | stage means (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for index, phase in enumerate(result["phases"], 1):
        stages = ", ".join(
            f"{k} {v['mean_ms']:.2f}" for k, v in phase["stages"].items() if v["mean_ms"] is not None
        )
        p50 = f"{phase['p50_ms']:.1f}" if phase["p50_ms"] is not None else ""
        lines.append(
            f"| {index} | {phase['model']} | {phase['samples_per_s']:,.0f} | {phase['failed']} | {p50} | "
            f"{stages} |"
        )
    ratio = result.get("ratio_robe_vs_full")
    lines += [
        "",
        f"Median samples/s: {result.get('median_samples_per_s')}; ratio robe/full "
        f"{ratio:.2f}x (target >= 2.7x)."
        if ratio
        else "",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.gpu_serve", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prepare", "drive"])
    parser.add_argument("--shape", default="terabyte")
    parser.add_argument("--rows-scale", type=float, default=0.1)
    parser.add_argument("--work-dir", type=Path, default=Path(os.environ.get("OUT") or "build/gpu_serve"))
    parser.add_argument("--providers", default="CUDAExecutionProvider,CPUExecutionProvider")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--samples-per-request", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2, help="robe full / full robe pairs")
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--load-timeout-s", type=float, default=300.0)
    parser.add_argument("--dry-run", action="store_true", help="tiny shape, CPU provider, short phases")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(force=True, level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    if args.dry_run:
        args.shape, args.rows_scale, args.providers = "tiny", 1.0, "CPUExecutionProvider"
        args.seconds, args.clients, args.samples_per_request, args.rounds, args.warmup_s = 2.0, 4, 16, 1, 0.5
    try:
        if args.command == "prepare":
            info = prepare(args.shape, args.rows_scale, args.work_dir)
        else:
            info = drive(
                args.work_dir,
                args.port,
                args.providers,
                args.seconds,
                args.clients,
                args.samples_per_request,
                args.rounds,
                args.warmup_s,
                args.load_timeout_s,
            )
    except (OSError, RuntimeError, ValueError, TimeoutError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(
        json.dumps(
            {
                k: info[k]
                for k in info
                if k in ("rows_scale", "ratio_robe_vs_full", "median_samples_per_s", "placement")
            }
        )
        + "\n"
    )
    logger.info(
        "command: python -m loadtest.gpu_serve %s", shlex.join(sys.argv[1:] if argv is None else argv)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
