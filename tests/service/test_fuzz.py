"""Schemathesis fuzzes every operation of the service's OpenAPI schema: no answer may be a 5xx."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from service_helpers import ServiceProcess

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (dev extra)")
from schemathesis import Case, GenerationMode  # noqa: E402

EXAMPLES = {GenerationMode.POSITIVE: 200, GenerationMode.NEGATIVE: 100}


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda mode: mode.value)
def test_fuzzed_requests_never_get_a_server_error(service: ServiceProcess, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(service.url + "/openapi.json")
    seen: set[str] = set()

    @settings(
        max_examples=EXAMPLES[mode], deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=schema.as_strategy(generation_mode=mode))
    def fuzz(case: Case) -> None:
        response = case.call(base_url=service.url, timeout=30)
        seen.add(case.operation.label)
        assert response.status_code < 500, (
            case.operation.label,
            case.body,
            response.status_code,
            response.text,
        )
        if response.status_code >= 400:
            assert "error" in response.json(), response.text

    fuzz()
    assert any("/infer" in label for label in seen) and any("/predict" in label for label in seen), seen
