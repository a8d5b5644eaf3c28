"""Service settings: every field can come from a ``ROBESERVE_<FIELD>`` environment variable.

Command-line flags of ``python -m service`` are passed as keyword arguments and win over the environment.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.placement import parse_modes, parse_size, parse_thread_pair

MIB = 1024 * 1024


class LogFormat(StrEnum):
    """How log records are written: human-readable text or one JSON object per line."""

    TEXT = "text"
    JSON = "json"


class Settings(BaseSettings):
    """Configuration of one service process.

    Args:
        repository: model repository root (``<name>/<version>/model.onnx`` + ``model.json``).
        host: address to bind.
        port: TCP port to bind.
        providers: comma-separated onnxruntime execution providers, or ``auto`` (CUDA when available,
            then CPU).
        intra_op_threads: onnxruntime intra-op threads per session; 0 lets onnxruntime choose.
        allow_spinning: let idle onnxruntime threads spin; unset means "only when the repository holds a
            single model" (spinning pools of several sessions steal the CPU from each other).
        max_batch_size: most samples merged into one ``session.run``.
        max_queue_delay_us: longest time the first request of a batch waits for others to join it.
        max_queue_size: requests waiting per model (not yet running) before new ones get 503.
        queue_wait_s: how long a request may wait, unread, for a place in a full queue before its 503.
        max_instances: samples allowed in one request (batch dimension); more -> 413.
        max_body_bytes: request body limit; larger -> 413.
        body_timeout_s: longest wait for a request body to arrive; slower -> 408 and the connection closes.
        decode_workers: processes that decode bodies over 16 KiB off the event loop; 0 decodes inline.
        admin_token: bearer token of the repository management endpoints; unset turns them off.
        poll_interval_s: how often the repository is scanned for new versions; 0 turns polling off.
        drain_delay_s: after SIGTERM, how long readiness reports 503 while requests are still accepted,
            before the listener closes and in-flight requests are finished.
        graceful_timeout_s: longest wait for in-flight requests at shutdown.
        retry_after_s: value of the Retry-After header sent with 503 when a queue is full.
        log_format: ``text`` or ``json`` (JSON lines).
        log_level: logging level name.
        access_log: log every HTTP request (costly under load).
        gpu_memory_limit: device memory budget of the models (``5MB``, ``24GB``, ``512MiB``, bytes); unset:
            what the GPU has free less a margin (no budget on a machine without a GPU). Without a GPU a
            given limit applies to the CPU session as if it were the device.
        placement: ``auto`` (from the budget), ``device`` or ``hybrid`` for every model, optionally
            followed by per-model choices: ``auto,dlrm-full=hybrid``.
        hybrid_threads: ``LOOKUP,DENSE`` intra-op threads of a hybrid model's two sessions; unset: sized so
            that together they use what one whole-model session would (rule in ``service.placement``).

    Example:
        >>> Settings(repository=Path("models"), max_batch_size=128).max_batch_size
        128
    """

    model_config = SettingsConfigDict(env_prefix="ROBESERVE_", frozen=True, extra="forbid")

    repository: Path = Path("models")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    providers: str = "auto"
    intra_op_threads: int = Field(default=0, ge=0)
    allow_spinning: bool | None = None
    max_batch_size: int = Field(default=64, ge=1)
    max_queue_delay_us: int = Field(default=1000, ge=0)
    max_queue_size: int = Field(default=256, ge=1)
    queue_wait_s: float = Field(default=1.0, ge=0)
    max_instances: int = Field(default=1024, ge=1)
    max_body_bytes: int = Field(default=16 * MIB, ge=1024)
    body_timeout_s: float = Field(default=30.0, gt=0)
    decode_workers: int = Field(default=2, ge=0)
    admin_token: SecretStr | None = None
    poll_interval_s: float = Field(default=10.0, ge=0)
    drain_delay_s: float = Field(default=2.0, ge=0)
    graceful_timeout_s: float = Field(default=30.0, gt=0)
    retry_after_s: int = Field(default=1, ge=0)
    log_format: LogFormat = LogFormat.TEXT
    log_level: str = "INFO"
    access_log: bool = False
    gpu_memory_limit: str | None = None
    placement: str = "auto"
    hybrid_threads: str | None = None

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        if not names:
            raise ValueError("providers must be 'auto' or a comma-separated list of execution providers")
        return ",".join(names)

    @field_validator("gpu_memory_limit")
    @classmethod
    def _check_gpu_memory_limit(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_size(value)
        return value.strip()

    @field_validator("placement")
    @classmethod
    def _check_placement(cls, value: str) -> str:
        parse_modes(value)
        return value

    @field_validator("hybrid_threads")
    @classmethod
    def _check_hybrid_threads(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_thread_pair(value)
        return value.strip()

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("admin_token")
    @classmethod
    def _empty_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        return value

    @property
    def provider_list(self) -> list[str]:
        """The configured providers, ``["auto"]`` when onnxruntime should choose."""
        return self.providers.split(",")

    @property
    def admin_enabled(self) -> bool:
        """Whether the repository management endpoints are on."""
        return self.admin_token is not None
