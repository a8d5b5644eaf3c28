"""100 concurrent HTTP requests are merged into batches and answered exactly like unbatched runs."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
from service_helpers import Reference, ServiceProcess, ctr_batch, ctr_infer_body, metric_value

CONCURRENT = 100


async def _send_all(url: str, bodies: list[dict[str, object]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:
        return await asyncio.gather(*(client.post("/v2/models/ctr/infer", json=body) for body in bodies))


def _batch_counts(client: httpx.Client) -> tuple[float, float]:
    text = client.get("/metrics").text
    total = metric_value(text, "robeserve_batch_size_count", model="ctr")
    singles = metric_value(text, "robeserve_batch_size_bucket", model="ctr", le="1.0")
    return total, singles


def test_concurrent_requests_are_batched_and_match_unbatched(
    service: ServiceProcess, client: httpx.Client, reference: Reference
) -> None:
    dense, categorical = ctr_batch(np.random.default_rng(99), CONCURRENT)
    bodies = [
        ctr_infer_body(dense[i : i + 1], categorical[i : i + 1], request_id=str(i)) for i in range(CONCURRENT)
    ]
    total_before, singles_before = _batch_counts(client)

    responses = asyncio.run(_send_all(service.url, bodies))

    assert [response.status_code for response in responses] == [200] * CONCURRENT
    assert [response.json()["id"] for response in responses] == [str(i) for i in range(CONCURRENT)]
    answers = np.array([response.json()["outputs"][0]["data"][0] for response in responses])
    np.testing.assert_allclose(answers, reference.ctr(dense, categorical), rtol=1e-5, atol=1e-7)
    total_after, singles_after = _batch_counts(client)
    batches = total_after - total_before
    merged = batches - (singles_after - singles_before)
    assert 0 < batches < CONCURRENT and merged >= 1, (batches, merged)
