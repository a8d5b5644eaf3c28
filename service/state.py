"""What one service process holds: settings, the model manager, the data plane and the rate meter."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from service.batching import BatchConfig
from service.config import Settings
from service.dataplane import DataPlane, DataPlaneLimits
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
    """

    settings: Settings
    manager: ModelManager
    dataplane: DataPlane
    meter: RateMeter
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
        policy = PlacementPolicy.from_settings(settings.gpu_memory_limit, settings.placement, providers)
        manager = ModelManager(settings.repository, runtime, batching, policy)
        dataplane = DataPlane(manager, DataPlaneLimits(settings.max_instances))
        return cls(settings, manager, dataplane, LiveMeter())

    @property
    def ready(self) -> bool:
        """Readiness: every model loaded and not draining."""
        return self.manager.ready and not self.draining

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def providers(self) -> list[str]:
        return list(self.manager.runtime.providers)
