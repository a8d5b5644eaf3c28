"""What one service process holds: settings, the model manager, the data plane and the rate meter."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from service.batching import BatchConfig
from service.config import Settings
from service.dataplane import DataPlane, DataPlaneLimits
from service.decoding import Decoder
from service.history import LiveMeter
from service.manager import ModelManager
from service.metrics import RateMeter
from service.placement import PlacementPolicy
from service.repository import scan_repository
from service.runtime import RuntimeConfig, resolve_providers


@dataclass(eq=False)
class AppState:
    """Process-wide state, reachable from routes through ``request.app.state.robeserve``.

    Args:
        settings: the validated settings.
        manager: which model versions serve.
        dataplane: request checking and batching.
        meter: live per-model rates for the status page.
        decoder: decodes request bodies (large ones in worker processes).
    """

    settings: Settings
    manager: ModelManager
    dataplane: DataPlane
    meter: RateMeter
    decoder: Decoder
    started: float = field(default_factory=time.monotonic)
    draining: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> AppState:
        """Build everything the settings describe; raises ValueError on unusable settings."""
        providers = resolve_providers(settings.provider_list)
        spinning = settings.allow_spinning
        if spinning is None:  # spinning pools of several sessions steal the CPU from each other
            spinning = len(scan_repository(settings.repository)) <= 1
        runtime = RuntimeConfig(tuple(providers), settings.intra_op_threads, spinning)
        batching = BatchConfig(
            settings.max_batch_size,
            settings.max_queue_delay_us,
            settings.max_queue_size,
            settings.retry_after_s,
        )
        policy = PlacementPolicy.from_settings(
            settings.gpu_memory_limit, settings.placement, providers, settings.hybrid_threads
        )
        manager = ModelManager(settings.repository, runtime, batching, policy)
        dataplane = DataPlane(manager, DataPlaneLimits(settings.max_instances))
        return cls(settings, manager, dataplane, LiveMeter(), Decoder(settings.decode_workers))

    def not_ready_reason(self) -> str | None:
        """Why readiness is 503, or None when ready: at least one model serves, every model that was
        not unloaded on purpose is loaded, and the service is not shutting down."""
        if self.draining:
            return "service is shutting down"
        entries = self.manager.entries
        if not self.manager.ready:
            pending = [
                name for name, entry in entries.items() if entry.serving is None and not entry.unloaded
            ]
            refused = [f"{name}: {entry.reason}" for name, entry in entries.items()
                       if entry.serving is None and not entry.unloaded and entry.failed]
            if refused:
                return f"models refused: {refused}"
            return f"models not loaded yet: {pending}" if pending else "loading the repository"
        if not any(entry.serving is not None for entry in entries.values()):
            return "no model is serving" + (
                "" if entries else f" (repository {self.settings.repository} is empty)"
            )
        return None

    @property
    def ready(self) -> bool:
        """Readiness (see ``not_ready_reason``)."""
        return self.not_ready_reason() is None

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def providers(self) -> list[str]:
        return list(self.manager.runtime.providers)
