"""The status page (``/``), its JSON (``/v1/status``) and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.common import State
from service.api.v2 import server_version
from service.manager import ModelEntry
from service.metrics import ModelRates
from service.schemas import ModelStatus, ServiceStatus

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(tags=["status"])
NO_RATES = ModelRates(0.0, 0.0, 0.0, 0.0)


@router.get("/", include_in_schema=False)
async def status_page() -> FileResponse:
    """Plain HTML; its script polls ``/v1/status``."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def _model_status(entry: ModelEntry, rates: ModelRates) -> ModelStatus:
    manifest = entry.serving.manifest if entry.serving else None
    document = manifest.document if manifest else {}
    return ModelStatus(
        name=entry.name,
        state=entry.state.value,
        version=manifest.version if manifest else None,
        reason=entry.reason,
        task=manifest.task.value if manifest else None,
        method=manifest.method if manifest else None,
        parameter_bytes=manifest.parameter_bytes if manifest else None,
        metrics=scores if isinstance(scores := document.get("metrics"), dict) else {},
        dataset=str(document["dataset"]) if document.get("dataset") is not None else None,
        created=str(document["created"]) if document.get("created") is not None else None,
        versions_available=entry.versions,
        requests_total=rates.requests_total,
        inferences_total=rates.inferences_total,
        requests_per_s=rates.requests_per_s,
        samples_per_s=rates.samples_per_s,
        placement=entry.serving.placement if entry.serving else None,
        placement_reason=entry.serving.model.decision_reason if entry.serving else "",
        device_bytes=entry.serving.model.device_bytes if entry.serving else None,
        table_bytes=entry.serving.model.table_bytes if entry.serving else None,
    )


@router.get("/v1/status", response_model=ServiceStatus)
async def service_status(state: State) -> ServiceStatus:
    """Readiness, providers and every model with its live requests/s and samples/s."""
    rates = state.meter.rates()
    return ServiceStatus(
        name="robeserve",
        version=server_version(),
        ready=state.ready,
        draining=state.draining,
        uptime_s=round(state.uptime_s, 3),
        providers=state.providers,
        rate_window_s=state.meter.window_s,
        models=[
            _model_status(entry, rates.get(name, NO_RATES)) for name, entry in state.manager.entries.items()
        ],
    )


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus text exposition."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
