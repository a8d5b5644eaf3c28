"""Which model versions serve: initial load, hot reload (poll or explicit), unload, readiness.

A new version is loaded and verified beside the serving one, then swapped in with one assignment on the
event loop; the old version's queue is closed after the swap, which runs everything already queued, so
no request is dropped. A version that fails to load is remembered with its files' fingerprint (it is not
retried until the files change) and the previous version keeps serving.

Device memory budget (``--gpu-memory-limit``): a version is placed against what the OTHER models' serving
versions hold on the device (``held_device_bytes``: the whole graph of a ``device`` model, the dense part of
a ``hybrid`` one), so two models that each fit the limit but not together are placed ``device`` then
``hybrid`` (or refused, with the bytes needed and left). The version a hot reload replaces is not counted
against its successor: it is released right after the swap. While a budget is set, placing and swapping in
a version is serialized across models (``_budget_lock``), so two loads never spend the same bytes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from service.batching import BatchConfig, BatchQueue
from service.errors import ModelLoadFailed, ModelNotFound, ModelNotReady
from service.metrics import ModelMetrics, PlacementMetrics, record_load_failure
from service.placement import PlacementPolicy, load_model
from service.repository import ModelManifest, fingerprint, scan_repository
from service.runtime import LoadedModel, LoadError, RuntimeConfig

logger = logging.getLogger(__name__)


class ModelState(StrEnum):
    """Lifecycle of a model (not of a version)."""

    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(eq=False)
class ServedModel:
    """A version that serves: its session, its batching queue and its metrics."""

    model: LoadedModel
    queue: BatchQueue
    metrics: ModelMetrics
    placement_metrics: PlacementMetrics | None = None

    @property
    def placement(self) -> str:
        return str(self.model.placement)

    @property
    def manifest(self) -> ModelManifest:
        return self.model.manifest

    @property
    def name(self) -> str:
        return self.model.manifest.name

    @property
    def version(self) -> str:
        return self.model.manifest.version


@dataclass(eq=False)
class ModelEntry:
    """Everything the manager knows about one model name."""

    name: str
    serving: ServedModel | None = None
    state: ModelState = ModelState.LOADING
    reason: str = ""
    unloaded: bool = False
    versions: list[str] = field(default_factory=list)
    failed: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ModelManager:
    """Loads the repository's models and keeps the newest good version of each serving.

    Args:
        root: repository root.
        runtime: how sessions are created.
        batching: batching limits of every model.
        placement: how each model's placement (device or hybrid) is chosen; default: no budget.

    Example:
        >>> runtime = RuntimeConfig(("CPUExecutionProvider",))
        >>> manager = ModelManager(Path("models"), runtime, BatchConfig(64, 1000, 256))
        >>> await manager.refresh()                 # initial load
        >>> served = manager.resolve("dlrm-robe", None)
    """

    def __init__(
        self,
        root: Path,
        runtime: RuntimeConfig,
        batching: BatchConfig,
        placement: PlacementPolicy | None = None,
    ) -> None:
        self.root = root
        self.runtime = runtime
        self.batching = batching
        self.placement = placement or PlacementPolicy()
        self.entries: dict[str, ModelEntry] = {}
        self.initial_load_done = False
        self._budget_lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        """True once the first load finished and every model that is not unloaded serves."""
        active = [entry for entry in self.entries.values() if not entry.unloaded]
        return self.initial_load_done and all(entry.serving is not None for entry in active)

    def resolve(self, name: str, version: str | None) -> ServedModel:
        """The serving version of ``name`` (which must be ``version`` when given)."""
        entry = self.entries.get(name)
        if entry is None:
            raise ModelNotFound(f"model '{name}' not found")
        serving = entry.serving
        if version is not None and (serving is None or serving.version != version):
            if version in entry.versions:
                raise ModelNotReady(f"version '{version}' of model '{name}' is not serving")
            raise ModelNotFound(f"model '{name}' has no version '{version}'")
        if serving is None:
            raise ModelNotReady(
                f"model '{name}' is not ready ({entry.state.value.lower()}{_why(entry.reason)})"
            )
        return serving

    def held_device_bytes(self, exclude: str | None = None) -> dict[str, int]:
        """Model name -> bytes its serving version holds on the device (when counted), but ``exclude``."""
        held = {}
        for name, entry in self.entries.items():
            serving = entry.serving
            if name != exclude and serving is not None and serving.model.device_bytes:
                held[name] = serving.model.device_bytes
        return held

    async def refresh(self) -> None:
        """Scan the repository; load new models and newer versions (what the poller calls)."""
        for name, versions in (await asyncio.to_thread(scan_repository, self.root)).items():
            entry = self.entries.setdefault(name, ModelEntry(name))
            entry.versions = versions
            if not entry.unloaded:
                await self._load_latest(entry, retry_failed=False)
        self.initial_load_done = True

    async def poll_forever(self, interval_s: float) -> None:
        """Refresh every ``interval_s`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except Exception:  # a broken scan must not stop later ones
                logger.exception("repository poll failed")

    async def load(self, name: str) -> ServedModel:
        """Explicit (re)load of the newest version; raises ModelLoadFailed with the reason."""
        versions = (await asyncio.to_thread(scan_repository, self.root)).get(name)
        if not versions:
            raise ModelNotFound(f"model '{name}' not found in the repository")
        entry = self.entries.setdefault(name, ModelEntry(name))
        entry.versions = versions
        entry.unloaded = False
        served = await self._load_latest(entry, retry_failed=True)
        if served is None:
            raise ModelLoadFailed(f"model '{name}' could not be loaded{_why(entry.reason)}")
        if entry.reason and served.version != versions[-1]:
            raise ModelLoadFailed(f"{entry.reason}; version {served.version} keeps serving")
        return served

    async def unload(self, name: str) -> None:
        """Stop serving ``name`` (queued requests still finish); the poller leaves it alone."""
        entry = self.entries.get(name)
        if entry is None:
            raise ModelNotFound(f"model '{name}' not found")
        async with entry.lock:
            entry.unloaded = True
            old, entry.serving = entry.serving, None
            entry.state, entry.reason = ModelState.UNAVAILABLE, "unloaded by request"
        if old is not None:
            await self._retire(old)
        logger.info("model '%s' unloaded", name)

    async def close(self) -> None:
        """Finish every queued request and stop all workers (at shutdown)."""
        for entry in self.entries.values():
            if entry.serving is not None:
                await entry.serving.queue.close()

    async def _load_latest(self, entry: ModelEntry, retry_failed: bool) -> ServedModel | None:
        async with entry.lock:
            candidates = list(reversed(entry.versions))
            if entry.serving is not None:
                current = entry.serving.version
                candidates = [version for version in candidates[:1] if version != current]
            first_refusal = ""  # the reason names the newest version refused, not the last one tried
            for version in candidates:
                version_dir = self.root / entry.name / version
                marks = fingerprint(version_dir)
                if not retry_failed and entry.failed.get(version) == marks:
                    continue
                if entry.serving is None:
                    entry.state = ModelState.LOADING
                if await self._swap_in(entry, version, marks):
                    break
                first_refusal = first_refusal or entry.reason
            if first_refusal:
                entry.reason = first_refusal
            if entry.serving is None and entry.state is ModelState.LOADING:
                entry.state = ModelState.FAILED
            return entry.serving

    async def _swap_in(self, entry: ModelEntry, version: str, marks: tuple[tuple[int, int], ...]) -> bool:
        if self.placement.limit_bytes is None:
            return await self._place_and_swap(entry, version, marks)
        async with self._budget_lock:  # the bytes left are read and spent by one load at a time
            return await self._place_and_swap(entry, version, marks)

    async def _place_and_swap(
        self, entry: ModelEntry, version: str, marks: tuple[tuple[int, int], ...]
    ) -> bool:
        held = self.held_device_bytes(exclude=entry.name)
        try:
            model = await asyncio.to_thread(
                load_model, self.root / entry.name / version, self.runtime, self.placement, held
            )
        except LoadError as exc:
            entry.failed[version] = marks
            record_load_failure(entry.name, version)
            entry.reason = f"version {version} refused: {exc}"
            logger.error("model '%s' version %s refused: %s", entry.name, version, exc)
            return False
        metrics = ModelMetrics(entry.name, version)
        placement_metrics = PlacementMetrics(entry.name, version)
        model.set_stage_observer(placement_metrics)
        queue = BatchQueue(
            model.run, self.batching, f"{entry.name}/{version}", metrics, pipeline_depth=model.pipeline_depth
        )
        queue.start()
        metrics.set_loaded(model.manifest.parameter_bytes)
        placement_metrics.set_placement(str(model.placement))
        old, entry.serving = entry.serving, ServedModel(model, queue, metrics, placement_metrics)
        entry.state = ModelState.READY
        if not entry.versions or version == entry.versions[-1]:
            entry.reason = ""  # else keep the reason why a newer version is not the one serving
        entry.failed.pop(version, None)
        logger.info(
            "model '%s' version %s serving on %s, placement %s",
            entry.name, version, ",".join(model.providers), model.placement,
        )  # fmt: skip
        if old is not None:
            await self._retire(old)
        return True

    @staticmethod
    async def _retire(old: ServedModel) -> None:
        old.metrics.set_unloaded()
        if old.placement_metrics is not None:
            old.placement_metrics.set_placement(None)
        await old.queue.close()
        old.model.close()
        logger.info("model '%s' version %s retired", old.name, old.version)


def _why(reason: str) -> str:
    return f": {reason}" if reason else ""
