"""Settings from ROBESERVE_* variables, command-line overrides, JSON-lines logging."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from service.__main__ import settings_from_args
from service.config import LogFormat, Settings
from service.logs import JsonLinesFormatter


def test_environment_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBESERVE_MAX_BATCH_SIZE", "128")
    monkeypatch.setenv("ROBESERVE_PORT", "9000")
    monkeypatch.setenv("ROBESERVE_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("ROBESERVE_LOG_FORMAT", "json")
    settings = settings_from_args(["--repository", "repo", "--port", "9100", "--max-queue-delay-us", "50"])
    assert settings.max_batch_size == 128 and settings.port == 9100 and settings.max_queue_delay_us == 50
    assert settings.repository == Path("repo") and settings.log_format is LogFormat.JSON
    assert settings.admin_enabled and settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret" and "s3cret" not in repr(settings)


def test_defaults() -> None:
    settings = Settings()
    assert settings.max_body_bytes == 16 * 1024 * 1024 and settings.provider_list == ["auto"]
    assert not settings.admin_enabled and Settings(admin_token=SecretStr("")).admin_token is None


@pytest.mark.parametrize(
    "values",
    [{"max_batch_size": 0}, {"port": 70000}, {"log_level": "loud"}, {"providers": " , "}, {"unknown": 1}],
)
def test_bad_settings(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**values)  # type: ignore[arg-type]


def test_json_lines_formatter() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "service.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
        )
    line = json.loads(JsonLinesFormatter().format(record))
    assert line["level"] == "ERROR" and line["logger"] == "service.x" and line["message"] == "failed here"
    assert "ValueError: boom" in line["exception"] and line["time"].endswith("+00:00")
