"""A standard Open Inference Protocol client (Triton's HTTP client) against the service."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from service_helpers import Reference, ServiceProcess, ctr_batch

if TYPE_CHECKING:
    from tritonclient.http import InferenceServerClient

httpclient = pytest.importorskip(
    "tritonclient.http", reason="tritonclient[http] is not installed (dev extra)"
)


@pytest.fixture
def triton(service: ServiceProcess) -> InferenceServerClient:
    return httpclient.InferenceServerClient(url=service.url.removeprefix("http://"))


def test_health_and_metadata(triton: InferenceServerClient) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("ctr") and not triton.is_model_ready("nope")
    metadata = triton.get_model_metadata("ctr")
    assert [(tensor["name"], tensor["shape"]) for tensor in metadata["inputs"]] == [
        ("dense", [-1, 13]),
        ("categorical", [-1, 26]),
    ]
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer(triton: InferenceServerClient, reference: Reference, binary: bool) -> None:
    dense, categorical = ctr_batch(np.random.default_rng(11), 6)
    inputs = [
        httpclient.InferInput("dense", [6, 13], "FP32"),
        httpclient.InferInput("categorical", [6, 26], "INT64"),
    ]
    inputs[0].set_data_from_numpy(dense, binary_data=binary)
    inputs[1].set_data_from_numpy(categorical, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("probability", binary_data=binary)]
    result = triton.infer("ctr", inputs, outputs=outputs, request_id="triton-1")
    assert result.get_response()["id"] == "triton-1"
    np.testing.assert_allclose(
        result.as_numpy("probability"), reference.ctr(dense, categorical), rtol=1e-5, atol=1e-7
    )


def test_infer_with_client_defaults(triton: InferenceServerClient, reference: Reference) -> None:
    dense, categorical = ctr_batch(np.random.default_rng(12), 2)
    inputs = [
        httpclient.InferInput("dense", [2, 13], "FP32"),
        httpclient.InferInput("categorical", [2, 26], "INT64"),
    ]
    inputs[0].set_data_from_numpy(dense)
    inputs[1].set_data_from_numpy(categorical)
    result = triton.infer("ctr", inputs, model_version="1")
    np.testing.assert_allclose(
        result.as_numpy("probability"), reference.ctr(dense, categorical), rtol=1e-5, atol=1e-7
    )


def test_errors_reach_the_client(triton: InferenceServerClient) -> None:
    from tritonclient.utils import InferenceServerException

    dense = httpclient.InferInput("dense", [1, 12], "FP32")
    dense.set_data_from_numpy(np.zeros((1, 12), np.float32))
    categorical = httpclient.InferInput("categorical", [1, 26], "INT64")
    categorical.set_data_from_numpy(np.zeros((1, 26), np.int64))
    with pytest.raises(InferenceServerException, match=r"has shape \[1, 12\]"):
        triton.infer("ctr", [dense, categorical])
