"""Every endpoint of the shared service over real HTTP, answers checked against onnxruntime directly."""

from __future__ import annotations

import json
import struct
from typing import Any

import httpx
import numpy as np
import pytest
from service_helpers import ADMIN_TOKEN, Reference, ctr_batch, ctr_infer_body, metric_value

RNG_SEED = 1234


def test_server_metadata_and_health(client: httpx.Client) -> None:
    metadata = client.get("/v2").json()
    assert metadata["name"] == "robeserve"
    assert {"binary_tensor_data", "model_repository"} <= set(metadata["extensions"])
    live = client.get("/v2/health/live")
    assert live.status_code == 200 and live.json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}


def test_model_metadata_uses_minus_one_for_batch(client: httpx.Client) -> None:
    metadata = client.get("/v2/models/ctr").json()
    assert metadata["name"] == "ctr" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [
        {"name": "dense", "datatype": "FP32", "shape": [-1, 13]},
        {"name": "categorical", "datatype": "INT64", "shape": [-1, 26]},
    ]
    assert metadata["outputs"] == [{"name": "probability", "datatype": "FP32", "shape": [-1]}]
    assert client.get("/v2/models/ctr/versions/1").json() == metadata
    loc = client.get("/v2/models/loc").json()
    assert [(o["name"], o["datatype"]) for o in loc["outputs"]] == [
        ("longitude", "FP32"),
        ("latitude", "FP32"),
        ("floor", "INT64"),
        ("building", "INT64"),
    ]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/ctr/ready", 200),
        ("/v2/models/ctr/versions/1/ready", 200),
        ("/v2/models/nope/ready", 404),
        ("/v2/models/ctr/versions/9/ready", 404),
        ("/v2/models/nope", 404),
        ("/v2/models/ctr/versions/9", 404),
        ("/v2/no/such/route", 404),
    ],
)
def test_readiness_and_not_found(client: httpx.Client, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status
    if status != 200:
        assert set(response.json()) == {"error"}


def test_method_not_allowed_is_json(client: httpx.Client) -> None:
    response = client.delete("/v2/models/ctr/infer")
    assert response.status_code == 405 and "error" in response.json()


def test_infer_json_matches_onnxruntime_and_echoes_id(client: httpx.Client, reference: Reference) -> None:
    dense, categorical = ctr_batch(np.random.default_rng(RNG_SEED), 5)
    response = client.post(
        "/v2/models/ctr/infer", json=ctr_infer_body(dense, categorical, request_id="req-7")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-7" and body["model_name"] == "ctr" and body["model_version"] == "1"
    (output,) = body["outputs"]
    assert output["name"] == "probability" and output["datatype"] == "FP32" and output["shape"] == [5]
    np.testing.assert_allclose(output["data"], reference.ctr(dense, categorical), rtol=1e-5, atol=1e-7)
    versioned = client.post("/v2/models/ctr/versions/1/infer", json=ctr_infer_body(dense, categorical))
    assert versioned.json()["outputs"][0]["data"] == output["data"]
    assert "id" not in versioned.json()


def test_infer_bytes_categorical_hex_equals_int64(client: httpx.Client) -> None:
    dense, categorical = ctr_batch(np.random.default_rng(RNG_SEED + 1), 3)
    categorical %= 2**32  # Criteo files hold 32-bit hex values
    as_int = client.post("/v2/models/ctr/infer", json=ctr_infer_body(dense, categorical)).json()
    body = ctr_infer_body(dense, categorical)
    hex_values = [f"{value:08x}" for value in categorical.ravel()]
    hex_values[0] = ""  # missing -> id 0
    categorical.ravel()[0] = 0
    body["inputs"][1] = {"name": "categorical", "shape": [3, 26], "datatype": "BYTES", "data": hex_values}
    as_hex = client.post("/v2/models/ctr/infer", json=body)
    assert as_hex.status_code == 200, as_hex.text
    expected = client.post("/v2/models/ctr/infer", json=ctr_infer_body(dense, categorical)).json()
    assert as_hex.json()["outputs"] == expected["outputs"]
    assert as_int["outputs"][0]["data"][1:] == expected["outputs"][0]["data"][1:]


def _binary_request(dense: np.ndarray, categorical: np.ndarray) -> tuple[bytes, int]:
    header = {
        "inputs": [
            {
                "name": "dense",
                "shape": list(dense.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": dense.nbytes},
            },
            {
                "name": "categorical",
                "shape": list(categorical.shape),
                "datatype": "INT64",
                "parameters": {"binary_data_size": categorical.nbytes},
            },
        ],
        "outputs": [{"name": "probability", "parameters": {"binary_data": True}}],
    }
    encoded = json.dumps(header).encode()
    return encoded + dense.astype("<f4").tobytes() + categorical.astype("<i8").tobytes(), len(encoded)


def test_infer_binary_tensor_extension(client: httpx.Client, reference: Reference) -> None:
    dense, categorical = ctr_batch(np.random.default_rng(RNG_SEED + 2), 4)
    body, header_length = _binary_request(dense, categorical)
    response = client.post(
        "/v2/models/ctr/infer",
        content=body,
        headers={
            "Inference-Header-Content-Length": str(header_length),
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    json_length = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.content[:json_length])
    (output,) = header["outputs"]
    assert output["parameters"]["binary_data_size"] == 16 and "data" not in output
    values = np.frombuffer(response.content[json_length:], dtype="<f4")
    np.testing.assert_allclose(values, reference.ctr(dense, categorical), rtol=1e-5, atol=1e-7)


def test_binary_bytes_input_is_length_prefixed(client: httpx.Client) -> None:
    dense, categorical = ctr_batch(np.random.default_rng(RNG_SEED + 3), 1)
    categorical %= 2**32
    blob = b"".join(struct.pack("<I", 8) + f"{value:08x}".encode() for value in categorical.ravel())
    header = json.dumps(
        {
            "inputs": [
                {"name": "dense", "shape": [1, 13], "datatype": "FP32", "data": dense.ravel().tolist()},
                {
                    "name": "categorical",
                    "shape": [1, 26],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(blob)},
                },
            ]
        }
    ).encode()
    response = client.post(
        "/v2/models/ctr/infer",
        content=header + blob,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    expected = client.post("/v2/models/ctr/infer", json=ctr_infer_body(dense, categorical)).json()
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == expected["outputs"]


def test_requested_outputs_and_2d_probability(client: httpx.Client) -> None:
    rssi = np.full((2, 520), 100.0, dtype=np.float32)
    rssi[:, :10] = -60.0
    body = {
        "inputs": [{"name": "rssi", "shape": [2, 520], "datatype": "FP32", "data": rssi.ravel().tolist()}],
        "outputs": [{"name": "floor"}],
    }
    response = client.post("/v2/models/loc/infer", json=body).json()
    assert [o["name"] for o in response["outputs"]] == ["floor"]
    assert response["outputs"][0]["datatype"] == "INT64" and len(response["outputs"][0]["data"]) == 2
    dense, categorical = ctr_batch(np.random.default_rng(RNG_SEED + 4), 3)
    output = client.post("/v2/models/ctr-2d/infer", json=ctr_infer_body(dense, categorical)).json()[
        "outputs"
    ][0]
    assert output["shape"] == [3, 1]


def _ctr_input(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


GOOD_DENSE = _ctr_input("dense", "FP32", [1, 13], [1.0] * 13)
GOOD_IDS = _ctr_input("categorical", "INT64", [1, 26], [1] * 26)
BAD_INFER_BODIES: dict[str, Any] = {
    "malformed json": b'{"inputs": [',
    "empty body": b"",
    "not an object": b"[1, 2]",
    "no inputs": {"inputs": []},
    "len(data) != prod(shape)": {"inputs": [_ctr_input("dense", "FP32", [1, 13], [1.0] * 12), GOOD_IDS]},
    "wrong rank": {"inputs": [_ctr_input("dense", "FP32", [13], [1.0] * 13), GOOD_IDS]},
    "wrong width": {"inputs": [_ctr_input("dense", "FP32", [1, 12], [1.0] * 12), GOOD_IDS]},
    "wrong datatype dense": {"inputs": [_ctr_input("dense", "INT64", [1, 13], [1] * 13), GOOD_IDS]},
    "wrong datatype ids": {"inputs": [GOOD_DENSE, _ctr_input("categorical", "FP32", [1, 26], [1.0] * 26)]},
    "unknown datatype": {"inputs": [_ctr_input("dense", "FP128", [1, 13], [1.0] * 13), GOOD_IDS]},
    "floats for INT64": {"inputs": [GOOD_DENSE, _ctr_input("categorical", "INT64", [1, 26], [1.5] * 26)]},
    "strings for FP32": {"inputs": [_ctr_input("dense", "FP32", [1, 13], ["a"] * 13), GOOD_IDS]},
    "null in data": {"inputs": [_ctr_input("dense", "FP32", [1, 13], [None] * 13), GOOD_IDS]},
    "ragged nested": {"inputs": [_ctr_input("dense", "FP32", [2, 13], [[1.0] * 13, [1.0] * 12]), GOOD_IDS]},
    "missing input": {"inputs": [GOOD_DENSE]},
    "unknown input": {"inputs": [GOOD_DENSE, GOOD_IDS, _ctr_input("extra", "FP32", [1], [1.0])]},
    "duplicate input": {"inputs": [GOOD_DENSE, GOOD_DENSE, GOOD_IDS]},
    "batch mismatch": {"inputs": [_ctr_input("dense", "FP32", [2, 13], [1.0] * 26), GOOD_IDS]},
    "empty batch": {
        "inputs": [_ctr_input("dense", "FP32", [0, 13], []), _ctr_input("categorical", "INT64", [0, 26], [])]
    },
    "NaN": json.dumps(
        {"inputs": [GOOD_IDS, _ctr_input("dense", "FP32", [1, 13], [float("nan")] * 13)]}
    ).encode(),
    "infinity": {"inputs": [_ctr_input("dense", "FP32", [1, 13], [1e39] + [1.0] * 12), GOOD_IDS]},
    "negative id": {"inputs": [GOOD_DENSE, _ctr_input("categorical", "INT64", [1, 26], [-1] + [1] * 25)]},
    "id >= 2^62": {"inputs": [GOOD_DENSE, _ctr_input("categorical", "INT64", [1, 26], [2**62] + [1] * 25)]},
    "id >= 2^64": {"inputs": [GOOD_DENSE, _ctr_input("categorical", "INT64", [1, 26], [2**64] + [1] * 25)]},
    "bad hex": {"inputs": [GOOD_DENSE, _ctr_input("categorical", "BYTES", [1, 26], ["xyz"] * 26)]},
    "unknown output": {"inputs": [GOOD_DENSE, GOOD_IDS], "outputs": [{"name": "nope"}]},
    "id not a string": {"id": 5, "inputs": [GOOD_DENSE, GOOD_IDS]},
}


@pytest.mark.parametrize("case", sorted(BAD_INFER_BODIES))
def test_infer_rejects_bad_requests_with_400(client: httpx.Client, case: str) -> None:
    body = BAD_INFER_BODIES[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(
        "/v2/models/ctr/infer", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, (case, response.text)
    assert set(response.json()) == {"error"} and response.json()["error"]


def test_bad_binary_framing_is_400(client: httpx.Client) -> None:
    dense, categorical = ctr_batch(np.random.default_rng(RNG_SEED), 1)
    body, header_length = _binary_request(dense, categorical)
    for length in ("abc", str(len(body) + 1), "0"):
        response = client.post(
            "/v2/models/ctr/infer", content=body, headers={"Inference-Header-Content-Length": length}
        )
        assert response.status_code == 400, length
    response = client.post(
        "/v2/models/ctr/infer",
        content=body + b"\0",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )
    assert response.status_code == 400 and "belong to no input" in response.json()["error"]


def test_unknown_model_and_version_are_404(client: httpx.Client) -> None:
    body = {"inputs": [GOOD_DENSE, GOOD_IDS]}
    assert client.post("/v2/models/nope/infer", json=body).status_code == 404
    assert client.post("/v2/models/ctr/versions/7/infer", json=body).status_code == 404
    assert client.post("/v1/models/nope/predict", json={"instances": [{"rssi": [1.0]}]}).status_code == 404


def test_limits_are_413(client: httpx.Client) -> None:
    dense, categorical = ctr_batch(np.random.default_rng(RNG_SEED), 257)
    too_many = client.post("/v2/models/ctr/infer", json=ctr_infer_body(dense, categorical))
    assert too_many.status_code == 413 and "257 instances" in too_many.json()["error"]
    huge = b'{"inputs": [' + b" " * (1 << 20) + b"]}"
    assert client.post("/v2/models/ctr/infer", content=huge).status_code == 413

    def chunks() -> Any:  # no Content-Length: the limit applies while reading
        for _ in range(40):
            yield b" " * 32768

    streamed = client.post("/v2/models/ctr/infer", content=chunks())
    assert streamed.status_code == 413 and "exceeds the limit" in streamed.json()["error"]


def test_predict_ctr_records(client: httpx.Client, reference: Reference) -> None:
    dense, categorical = ctr_batch(np.random.default_rng(RNG_SEED + 5), 3)
    categorical %= 2**32
    dense[1, 4] = 0.0
    categorical[2, 7] = 0
    instances = []
    for row in range(3):
        raw_dense: list[float | None] = dense[row].tolist()
        raw_ids: list[str | int | None] = [f"{value:08x}" for value in categorical[row]]
        raw_ids[1] = int(categorical[row, 1])
        if row == 1:
            raw_dense[4] = None
        if row == 2:
            raw_ids[7] = None
        instances.append({"dense": raw_dense, "categorical": raw_ids})
    response = client.post("/v1/models/ctr/predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "ctr" and body["model_version"] == "1"
    np.testing.assert_allclose(body["predictions"], reference.ctr(dense, categorical), rtol=1e-5, atol=1e-7)
    flat = client.post("/v1/models/ctr-2d/predict", json={"instances": instances[:2]}).json()["predictions"]
    assert len(flat) == 2 and all(isinstance(value, float) for value in flat)


def test_predict_localization_records(client: httpx.Client) -> None:
    rssi: list[float | None] = [100.0] * 520
    rssi[:5] = [-45.0, -60.0, -72.5, None, -90.0]
    response = client.post(
        "/v1/models/loc/predict", json={"instances": [{"rssi": rssi}, {"rssi": [100] * 520}]}
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    assert set(predictions[0]) == {"longitude", "latitude", "floor", "building"}
    assert isinstance(predictions[0]["floor"], int) and 0 <= predictions[0]["building"] < 3


BAD_PREDICT: list[tuple[str, dict[str, Any]]] = [
    ("ctr", {"instances": []}),
    ("ctr", {"instances": [{"dense": [1.0] * 13, "categorical": [1] * 25}]}),
    ("ctr", {"instances": [{"dense": [1.0] * 12, "categorical": [1] * 26}]}),
    ("ctr", {"instances": [{"categorical": [1] * 26}]}),
    ("ctr", {"instances": [{"dense": [1.0] * 13, "categorical": ["zz"] + [1] * 25}]}),
    ("ctr", {"instances": [{"dense": [1.0] * 13, "categorical": ["1" * 17] + [1] * 25}]}),
    ("ctr", {"instances": [{"dense": [1.0] * 13, "categorical": [-5] + [1] * 25}]}),
    ("ctr", {"instances": [{"dense": [1.0] * 13, "categorical": [2**62] + [1] * 25}]}),
    ("ctr", {"instances": [{"dense": [1.0] * 13, "categorical": [True] + [1] * 25}]}),
    ("ctr", {"instances": [{"dense": ["1"] * 13, "categorical": [1] * 26}]}),
    ("ctr", {"instances": [{"rssi": [1.0] * 520}]}),
    ("ctr", {"instances": [{"dense": [1.0] * 13, "categorical": [1] * 26, "extra": 1}]}),
    ("loc", {"instances": [{"rssi": [1.0] * 519}]}),
    ("loc", {"instances": [{"rssi": [1e39] + [1.0] * 519}]}),
    ("loc", {"instances": [{"dense": [1.0] * 13, "categorical": [1] * 26}]}),
    ("loc", {"rows": []}),
]


@pytest.mark.parametrize(("model", "body"), BAD_PREDICT)
def test_predict_rejects_bad_records_with_400(client: httpx.Client, model: str, body: dict[str, Any]) -> None:
    response = client.post(f"/v1/models/{model}/predict", json=body)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}


def test_predict_nan_is_400(client: httpx.Client) -> None:
    content = b'{"instances": [{"rssi": [NaN' + b", 1.0" * 519 + b"]}]}"
    response = client.post("/v1/models/loc/predict", content=content)
    assert response.status_code == 400 and "NaN" in response.json()["error"]


def test_metrics_names_labels_and_buckets(client: httpx.Client) -> None:
    dense, categorical = ctr_batch(np.random.default_rng(RNG_SEED), 2)
    assert client.post("/v2/models/ctr/infer", json=ctr_infer_body(dense, categorical)).status_code == 200
    assert client.post("/v2/models/ctr/infer", json={"inputs": [GOOD_DENSE]}).status_code == 400
    text = client.get("/metrics").text
    assert (
        metric_value(text, "robeserve_requests_total", model="ctr", version="1", endpoint="infer", code="200")
        >= 1
    )
    assert metric_value(text, "robeserve_requests_total", model="ctr", endpoint="infer", code="400") >= 1
    assert metric_value(text, "robeserve_inferences_total", model="ctr", version="1") >= 2
    for histogram in ("request_duration_seconds", "queue_duration_seconds", "compute_duration_seconds"):
        for bound in ("0.0001", "10.0", "+Inf"):
            assert f"robeserve_{histogram}_bucket{{" in text and f'le="{bound}"' in text
        assert metric_value(text, f"robeserve_{histogram}_count", model="ctr") >= 1
    assert metric_value(text, "robeserve_batch_size_count", model="ctr", version="1") >= 1
    assert "robeserve_queue_depth{" in text
    assert metric_value(text, "robeserve_model_ready", model="ctr", version="1") == 1
    assert metric_value(text, "robeserve_model_parameter_bytes", model="ctr", version="1") > 0


def test_status_json(client: httpx.Client) -> None:
    status = client.get("/v1/status").json()
    assert status["ready"] is True and status["providers"] == ["CPUExecutionProvider"]
    models = {model["name"]: model for model in status["models"]}
    assert set(models) == {"ctr", "ctr-2d", "loc"}
    assert models["ctr"]["method"] == "robe" and models["ctr"]["metrics"]["auc"] == pytest.approx(0.7312)
    assert models["ctr"]["parameter_bytes"] > 0 and models["loc"]["task"] == "localization"
    page = client.get("/")
    assert page.status_code == 200 and "/static/status.js" in page.text
    assert client.get("/static/status.js").status_code == 200


def test_openapi_documents_the_bodies(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    infer = schema["paths"]["/v2/models/{model_name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferenceRequest")
    assert {"InferenceRequest", "RequestInput", "PredictRequest", "CtrInstance"} <= set(
        schema["components"]["schemas"]
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, 200)],
)
def test_repository_index_needs_the_token(client: httpx.Client, headers: dict[str, str], status: int) -> None:
    response = client.post("/v2/repository/index", headers=headers)
    assert response.status_code == status
    if status == 200:
        assert {entry["name"]: entry["state"] for entry in response.json()} == {
            "ctr": "READY",
            "ctr-2d": "READY",
            "loc": "READY",
        }
    else:
        assert response.headers["WWW-Authenticate"] == "Bearer"
