"""The status page (``/``), its JSON (``/v1/status``) and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.common import State
from service.api.v2 import server_version
from service.history import LiveMeter, ModelView
from service.manager import ModelEntry
from service.metrics import ModelRates
from service.repository import ModelManifest, Task
from service.schemas import ModelStatus, ServiceStatus

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(tags=["status"])
NO_RATES = ModelRates(0.0, 0.0, 0.0, 0.0)


@router.get("/", include_in_schema=False)
async def status_page() -> FileResponse:
    """Plain HTML; its script polls ``/v1/status``."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def _method(manifest: ModelManifest | None) -> tuple[str | None, str]:
    """The method shown on the page and a one-line detail (NObLe models have no embedding method)."""
    if manifest is None:
        return None, ""
    document = manifest.document
    embedding = document.get("embedding")
    embedding = embedding if isinstance(embedding, dict) else {}
    parameters = embedding.get("parameters")
    parameters = parameters if isinstance(parameters, dict) else {}
    noble = document.get("noble")
    if manifest.task is Task.LOCALIZATION and (manifest.method == "none" or isinstance(noble, dict)):
        detail = "classification over output-space cells"
        if isinstance(noble, dict):
            cells = noble.get("num_cells") or noble.get("cell_sizes")
            members = noble.get("members", 1)
            detail = f"{members} member(s), cells {cells}, decode {document.get('decode', '?')}"
        return "noble", detail
    keys = ("block_size", "memory_size", "compression", "embedding_dim")
    detail = ", ".join(f"{key} {parameters[key]}" for key in keys if key in parameters)
    return manifest.method, detail


def _model_status(entry: ModelEntry, rates: ModelRates, view: ModelView) -> ModelStatus:
    serving = entry.serving
    manifest = serving.manifest if serving else None
    document = manifest.document if manifest else {}
    method, detail = _method(manifest)
    return ModelStatus(
        name=entry.name,
        state=entry.state.value,
        version=manifest.version if manifest else None,
        reason=entry.reason,
        task=manifest.task.value if manifest else None,
        method=method,
        method_detail=detail,
        parameter_bytes=manifest.parameter_bytes if manifest else None,
        metrics=scores if isinstance(scores := document.get("metrics"), dict) else {},
        dataset=str(document["dataset"]) if document.get("dataset") is not None else None,
        created=str(document["created"]) if document.get("created") is not None else None,
        versions_available=entry.versions,
        requests_total=rates.requests_total,
        inferences_total=rates.inferences_total,
        requests_per_s=rates.requests_per_s,
        samples_per_s=rates.samples_per_s,
        placement=serving.placement if serving else None,
        placement_reason=serving.model.decision_reason if serving else "",
        device_bytes=serving.model.device_bytes if serving else None,
        table_bytes=serving.model.table_bytes if serving else None,
        history=view.history,
        p50_ms=view.p50_ms,
        p99_ms=view.p99_ms,
        mean_batch_size=view.mean_batch_size,
        stage_ms=view.stage_ms,
    )


@router.get("/v1/status", response_model=ServiceStatus)
async def service_status(state: State) -> ServiceStatus:
    """Readiness, providers and every model with its live rates, latency, batch sizes and history."""
    rates = state.meter.rates()
    views = state.meter.view() if isinstance(state.meter, LiveMeter) else {}
    return ServiceStatus(
        name="robeserve",
        version=server_version(),
        ready=state.ready,
        draining=state.draining,
        uptime_s=round(state.uptime_s, 3),
        providers=state.providers,
        rate_window_s=state.meter.window_s,
        models=[
            _model_status(entry, rates.get(name, NO_RATES), views.get(name, ModelView()))
            for name, entry in state.manager.entries.items()
        ],
        device_budget_bytes=state.manager.placement.limit_bytes,
        device_bytes_held=sum(state.manager.held_device_bytes().values()),
    )


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus text exposition (rendered in a worker thread, off the event loop)."""
    return Response(await asyncio.to_thread(generate_latest), media_type=CONTENT_TYPE_LATEST)
