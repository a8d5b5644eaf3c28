"""Hybrid placement (DESIGN.md section 6) on the CPU: the split of exported DLRMs (VocabLookup + Gather on
full tables, hashed rows + Gather) answers as the whole-model session, the budget chooses the placement, bad
budgets and unsplittable models get clear errors, and the served hybrid model reloads and drains like any
other."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from service_helpers import ADMIN_TOKEN, ServiceProcess, metric_value

from export.exporter import ExportOptions, export_run
from export.verify import PROBABILITY_ATOL
from service.batching import BatchConfig, BatchQueue
from service.placement import (
    Decision,
    HybridModel,
    Placement,
    PlacementMode,
    PlacementPolicy,
    Split,
    decide,
    embedding_outputs,
    hybrid_threads,
    load_model,
    parse_modes,
    parse_size,
    parse_thread_pair,
    physical_cores,
)
from service.repository import read_manifest
from service.runtime import CPU, LoadError, OnnxModel, RuntimeConfig
from training.dlrm.checkpoint import save_checkpoint
from training.dlrm.embeddings import Method
from training.dlrm.factory import EmbeddingSpec, build_embedding
from training.dlrm.model import DLRM, DLRMConfig

NUM_FEATURES = 5
CPU_ONLY = RuntimeConfig((CPU,), intra_op_threads=1)
HYBRID_LIMIT = 60_000  # bytes: the tiny full model's MLPs fit, its 120 kB of tables do not
# Served beside dlrm-robe (40.5 kB whole): dlrm-full's dense part (24.7 kB) and dlrm-robe fit together, the
# whole dlrm-full (144.5 kB) does not.
SERVED_LIMIT = "80kB"


def _run_dir(root: Path, method: str) -> Path:
    rng = np.random.default_rng(0)
    scale = rng.integers(1, 1 << 40, size=NUM_FEATURES)
    ids = (rng.integers(0, 40, size=(1500, NUM_FEATURES)) * scale).astype(np.int64)
    ids[:, 0] = rng.integers(0, 1 << 62, size=1500)  # a feature with no repeats: ~100 kB of table
    spec = EmbeddingSpec(Method(method), block_size=4, signature_rows=2000)
    embedding = build_embedding(spec, 16, ids, None if method == "full" else 16_000)
    model = DLRM(DLRMConfig.preset("tiny", 13, NUM_FEATURES), embedding).eval()
    run_dir = root / method
    save_checkpoint(run_dir, model, {"dataset": "synthetic-tiny", "path": None, "num_dense": 13},
                    {"auc": 0.5, "logloss": 0.69}, {})  # fmt: skip
    return run_dir


def export_tiny(root: Path, methods: tuple[str, ...] = ("full", "hash", "robe")) -> dict[str, Path]:
    """Tiny DLRMs (random weights) exported and verified into ``root/models/dlrm-<method>/1``."""
    return {
        method: export_run(_run_dir(root / "runs", method), ExportOptions(root / "models", f"dlrm-{method}"))
        for method in methods
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """dlrm-full, dlrm-hash and dlrm-robe (tiny, random weights), exported and verified once."""
    return export_tiny(tmp_path_factory.mktemp("hybrid"))


def _batch(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    categorical = rng.integers(0, 1 << 62, size=(size, NUM_FEATURES), dtype=np.int64)
    categorical[: size // 2] = rng.integers(0, 40, size=(size // 2, NUM_FEATURES))  # some known values
    return {"dense": rng.random((size, 13), dtype=np.float32) * 5, "categorical": categorical}


def _body(feeds: dict[str, np.ndarray]) -> dict[str, object]:
    return {"inputs": [
        {"name": "dense", "shape": list(feeds["dense"].shape), "datatype": "FP32",
         "data": feeds["dense"].ravel().tolist()},
        {"name": "categorical", "shape": list(feeds["categorical"].shape), "datatype": "INT64",
         "data": feeds["categorical"].ravel().tolist()},
    ]}  # fmt: skip


# --- settings -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5MB", 5_000_000),
        ("5 mb", 5_000_000),
        ("24GiB", 24 << 30),
        ("1000", 1000),
        ("1.5kB", 1500),
        ("2KiB", 2048),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "5XB", "-1MB", "MB", "0", "five"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_parse_modes() -> None:
    assert parse_modes("auto") == (PlacementMode.AUTO, {})
    assert parse_modes("device,dlrm-full=hybrid") == (
        PlacementMode.DEVICE,
        {"dlrm-full": PlacementMode.HYBRID},
    )
    with pytest.raises(ValueError, match="unknown placement 'gpu'"):
        parse_modes("dlrm-full=gpu")


@pytest.mark.parametrize(
    ("whole", "on_gpu", "expected"),
    [
        (1, False, (1, 1)),
        (2, False, (2, 2)),  # both on the CPU: the two parts run one after the other, each as the whole
        (8, False, (8, 8)),
        (2, True, (1, 1)),  # dense part on the GPU: it launches kernels, the lookup gets the rest
        (8, True, (7, 1)),
    ],
)
def test_hybrid_threads_stay_within_the_whole_session(
    whole: int, on_gpu: bool, expected: tuple[int, int]
) -> None:
    lookup, dense = hybrid_threads(RuntimeConfig((CPU,), whole), on_gpu)
    assert (lookup, dense) == expected
    if on_gpu:  # two batches in flight: together no more than the whole-model session
        assert lookup + dense <= whole or whole == 1


def test_hybrid_threads_default_and_override() -> None:
    default = hybrid_threads(RuntimeConfig((CPU,), 0), True)  # 0: onnxruntime's default, physical cores
    assert sum(default) <= max(2, physical_cores())
    assert hybrid_threads(RuntimeConfig((CPU,), 0), False) == (physical_cores(), physical_cores())
    assert hybrid_threads(RuntimeConfig((CPU,), 8), False, (3, 3)) == (3, 3)
    assert parse_thread_pair(" 2, 1") == (2, 1)
    for bad in ("2", "0,1", "a,b", "1,2,3"):
        with pytest.raises(ValueError, match="hybrid threads"):
            parse_thread_pair(bad)


def test_hybrid_sessions_get_the_sized_threads(
    exported: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    policy = PlacementPolicy(mode=PlacementMode.HYBRID)
    with caplog.at_level("INFO", logger="service.placement"):
        load_model(exported["full"], RuntimeConfig((CPU,), intra_op_threads=8), policy)
        load_model(exported["full"], CPU_ONLY, replace(policy, hybrid_threads=(2, 3)))
    assert (
        "hybrid intra-op threads: lookup 8, dense 8 "
        "(run one after the other; the whole-model session would get 8" in caplog.text
    )
    assert "hybrid intra-op threads: lookup 2, dense 3 (set by --hybrid-threads" in caplog.text


# --- the split ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["full", "hash"])
def test_split_answers_as_the_whole_model(exported: dict[str, Path], method: str) -> None:
    whole = OnnxModel.load(exported[method], CPU_ONLY)
    hybrid = load_model(exported[method], CPU_ONLY, PlacementPolicy(mode=PlacementMode.HYBRID))
    assert isinstance(hybrid, HybridModel) and hybrid.placement is Placement.HYBRID
    assert hybrid.table_bytes > 0 and hybrid.device_bytes is not None
    assert (
        hybrid.device_bytes + hybrid.table_bytes
        >= read_manifest(exported[method]).document["embedding"]["bytes"]
    )
    for size in (1, 7, 256):
        feeds = _batch(size, seed=size)
        expected = whole.run(feeds)["probability"]
        got = hybrid.run(feeds)["probability"]
        assert got.shape == expected.shape == (size,)
        np.testing.assert_allclose(got, expected, rtol=0, atol=PROBABILITY_ATOL)
    # the lookup part holds the tables, the dense part none of them
    dense_initializers = {t.name for t in hybrid.split.dense.graph.initializer}
    lookup_initializers = {t.name for t in hybrid.split.lookup.graph.initializer}
    assert (
        "dlrm.embedding.weight" in lookup_initializers and "dlrm.embedding.weight" not in dense_initializers
    )


def test_budget_chooses_the_placement(exported: dict[str, Path]) -> None:
    policy = PlacementPolicy(limit_bytes=HYBRID_LIMIT)
    assert load_model(exported["full"], CPU_ONLY, policy).placement == Placement.HYBRID
    robe = load_model(exported["robe"], CPU_ONLY, policy)  # 40 kB: fits whole
    assert robe.placement == Placement.DEVICE and isinstance(robe, OnnxModel)
    assert load_model(exported["full"], CPU_ONLY, PlacementPolicy()).placement == Placement.DEVICE
    forced = PlacementPolicy(limit_bytes=HYBRID_LIMIT, per_model=(("dlrm-full", PlacementMode.DEVICE),))
    with pytest.raises(LoadError, match=r"placement device needs .*bytes"):
        load_model(exported["full"], CPU_ONLY, forced)


# --- the device budget across models ----------------------------------------------------------------------


def _split(lookup_bytes: int, dense_bytes: int) -> Split:
    import onnx

    return Split(onnx.ModelProto(), onnx.ModelProto(), ("embedding",), lookup_bytes, dense_bytes)


def test_budget_counts_what_the_other_models_hold() -> None:
    policy = PlacementPolicy(limit_bytes=1000)
    alone = decide("b", policy, 600, _split(500, 100), None)
    assert alone.placement is Placement.DEVICE and alone.left_bytes == 1000 and alone.held_bytes == 0
    beside = decide("b", policy, 600, _split(500, 100), None, {"a": 600})  # each fits, not both
    assert beside == Decision(Placement.HYBRID, 600, 100, beside.reason, 1000, 600)
    assert beside.left_bytes == 400
    assert "400 bytes left on the device" in beside.reason and "a 600 bytes" in beside.reason
    # a hybrid neighbour counts with its dense part only (what the manager passes for it)
    assert decide("b", policy, 600, None, None, {"a": 100, "c": 300}).placement is Placement.DEVICE
    # models that hold nothing (not counted, unloaded) change nothing
    assert decide("b", policy, 1000, None, None, {"a": 0}).placement is Placement.DEVICE


def test_a_reload_does_not_count_the_version_it_replaces() -> None:
    policy = PlacementPolicy(limit_bytes=1000)
    reload = decide("a", policy, 900, None, None, {"a": 900, "b": 100})
    assert reload.placement is Placement.DEVICE and reload.held_bytes == 100 and reload.left_bytes == 900


def test_budget_refusals_name_the_bytes_needed_and_left() -> None:
    policy = PlacementPolicy(limit_bytes=1000)
    with pytest.raises(LoadError) as refused:
        decide("b", policy, 600, _split(500, 300), None, {"a": 800})
    message = str(refused.value)
    assert "fits nowhere: it needs 600 bytes on the device, or 300 bytes in hybrid placement" in message
    assert "200 bytes left on the device; limit 1.0 kB (1000 bytes), other models hold 800 bytes: a" in (
        message
    )
    forced = PlacementPolicy(limit_bytes=1000, per_model=(("b", PlacementMode.DEVICE),))
    with pytest.raises(LoadError, match=r"placement device needs 600 bytes on the device; 200 bytes left"):
        decide("b", forced, 600, _split(500, 100), None, {"a": 800})
    with pytest.raises(LoadError, match=r"needs 600 bytes on the device \(200 bytes left.*impossible: no"):
        decide("b", policy, 600, None, "no cut", {"a": 800})
    unlimited = decide("b", PlacementPolicy(), 10**12, None, None, {"a": 10**12})
    assert unlimited.placement is Placement.DEVICE and unlimited.left_bytes is None


def test_a_model_that_fits_nowhere_is_refused_with_the_bytes(exported: dict[str, Path]) -> None:
    with pytest.raises(LoadError, match=r"fits nowhere: it needs .*\d+ bytes.* or .*\d+ bytes.* in hybrid"):
        load_model(exported["full"], CPU_ONLY, PlacementPolicy(limit_bytes=5_000))


def test_unsplittable_model_needing_hybrid_is_a_clear_error(exported: dict[str, Path]) -> None:
    with pytest.raises(LoadError, match=r"embedding output tensors: model.json names none"):
        load_model(exported["robe"], CPU_ONLY, PlacementPolicy(limit_bytes=5_000))
    with pytest.raises(LoadError, match="placement hybrid was asked for"):
        load_model(exported["robe"], CPU_ONLY, PlacementPolicy(mode=PlacementMode.HYBRID))


def _with_card(source: Path, target: Path, edit: Callable[[dict[str, object]], None]) -> Path:
    shutil.copytree(source, target)
    card = json.loads((target / "model.json").read_text())
    edit(card)
    (target / "model.json").write_text(json.dumps(card))
    return target


def test_model_json_names_the_embedding_outputs(exported: dict[str, Path], tmp_path: Path) -> None:
    import onnx

    def declare(names: list[str]) -> Callable[[dict[str, object]], None]:
        def edit(card: dict[str, object]) -> None:
            embedding = card["embedding"]
            assert isinstance(embedding, dict)
            embedding["outputs"] = names

        return edit

    derived = embedding_outputs(onnx.load(str(exported["full"] / "model.onnx"), load_external_data=False),
                                read_manifest(exported["full"]))  # fmt: skip
    named = _with_card(exported["full"], tmp_path / "named" / "dlrm-full" / "1", declare(list(derived)))
    model = load_model(named, CPU_ONLY, PlacementPolicy(mode=PlacementMode.HYBRID))
    assert isinstance(model, HybridModel) and model.embedding_outputs == derived
    wrong = _with_card(exported["full"], tmp_path / "wrong" / "dlrm-full" / "1", declare(["no_such_tensor"]))
    with pytest.raises(LoadError, match=r"embedding.outputs names \['no_such_tensor'\]"):
        load_model(wrong, CPU_ONLY, PlacementPolicy(mode=PlacementMode.HYBRID))


def test_pipelined_queue_answers_each_request(exported: dict[str, Path]) -> None:
    hybrid = load_model(exported["full"], CPU_ONLY, PlacementPolicy(mode=PlacementMode.HYBRID))
    whole = OnnxModel.load(exported["full"], CPU_ONLY)
    stages: list[str] = []

    class Observer:
        def stage(self, stage: str, seconds: float) -> None:
            assert seconds >= 0
            stages.append(stage)

    hybrid.set_stage_observer(Observer())
    requests = [_batch(3, seed=seed) for seed in range(40)]

    async def drive() -> list[dict[str, np.ndarray]]:
        queue = BatchQueue(
            hybrid.run, BatchConfig(8, 200, 64), "hybrid", pipeline_depth=hybrid.pipeline_depth
        )
        queue.start()
        futures = [queue.submit(feeds) for feeds in requests]
        results = await asyncio.gather(*futures)
        await queue.close()
        return list(results)

    results = asyncio.run(drive())
    for feeds, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(
            result["probability"], whole.run(feeds)["probability"], atol=PROBABILITY_ATOL
        )
    assert set(stages) == {"lookup", "dense"}  # no device copy on a CPU-only machine
    assert hybrid.pipeline_depth == 1  # both stages on the CPU: one batch at a time


# --- served ---------------------------------------------------------------------------------------------


@pytest.fixture
def hybrid_repository(exported: dict[str, Path], tmp_path: Path) -> Path:
    root = tmp_path / "models"
    for method in ("full", "robe"):
        shutil.copytree(exported[method].parent, root / f"dlrm-{method}")
    return root


def test_served_hybrid_answers_metrics_and_metadata(
    start_service: Callable[..., ServiceProcess], hybrid_repository: Path, exported: dict[str, Path]
) -> None:
    service = start_service(
        hybrid_repository, ROBESERVE_GPU_MEMORY_LIMIT=SERVED_LIMIT, ROBESERVE_INTRA_OP_THREADS="1"
    )
    whole = OnnxModel.load(exported["full"], CPU_ONLY)
    with service.client() as client:
        assert client.get("/v2/models/dlrm-full").json()["placement"] == "hybrid"
        assert client.get("/v2/models/dlrm-robe").json()["placement"] == "device"
        feeds = _batch(16, seed=3)
        response = client.post("/v2/models/dlrm-full/infer", json=_body(feeds))
        assert response.status_code == 200, response.text
        got = np.asarray(response.json()["outputs"][0]["data"], dtype=np.float32)
        np.testing.assert_allclose(got, whole.run(feeds)["probability"], atol=PROBABILITY_ATOL)
        text = client.get("/metrics").text
        status = {m["name"]: m for m in client.get("/v1/status").json()["models"]}
    assert metric_value(text, "robeserve_model_placement", model="dlrm-full", placement="hybrid") == 1
    assert metric_value(text, "robeserve_model_placement", model="dlrm-full", placement="device") == 0
    assert metric_value(text, "robeserve_model_placement", model="dlrm-robe", placement="device") == 1
    for stage in ("lookup", "dense"):
        assert (
            metric_value(text, "robeserve_stage_duration_seconds_count", model="dlrm-full", stage=stage) >= 1
        )
    assert (
        status["dlrm-full"]["placement"] == "hybrid"
        and "host memory" in status["dlrm-full"]["placement_reason"]
    )
    assert status["dlrm-full"]["table_bytes"] > 100_000


def test_hybrid_reload_refuses_a_model_that_fits_nowhere(
    start_service: Callable[..., ServiceProcess], hybrid_repository: Path, exported: dict[str, Path]
) -> None:
    service = start_service(
        hybrid_repository, ROBESERVE_GPU_MEMORY_LIMIT="30kB", ROBESERVE_ADMIN_TOKEN=ADMIN_TOKEN,
        ROBESERVE_INTRA_OP_THREADS="1", wait="/v2/models/dlrm-full/ready",
    )  # fmt: skip

    def as_version(card: dict[str, object], version: int) -> None:
        card["name"], card["version"] = "dlrm-full", version

    # version 2: the ROBE graph (40 kB, no table to cut at) -> refused with its bytes; version 1 serves on
    _with_card(exported["robe"], hybrid_repository / "dlrm-full" / "2", lambda card: as_version(card, 2))
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with service.client() as client:
        refused = client.post("/v2/repository/models/dlrm-full/load", headers=auth)
        assert refused.status_code >= 400 and "bytes" in refused.json()["error"], refused.text
        assert client.get("/v2/models/dlrm-full").json() | {} and client.get("/v2/models/dlrm-full").json()[
            "versions"] == ["1"]  # fmt: skip
        assert client.post("/v2/models/dlrm-full/infer", json=_body(_batch(4))).status_code == 200
        # version 3: the full model again -> swapped in, hybrid
        shutil.rmtree(hybrid_repository / "dlrm-full" / "2")
        _with_card(exported["full"], hybrid_repository / "dlrm-full" / "3", lambda card: as_version(card, 3))
        assert client.post("/v2/repository/models/dlrm-full/load", headers=auth).status_code == 200
        metadata = client.get("/v2/models/dlrm-full").json()
        assert metadata["versions"] == ["3"] and metadata["placement"] == "hybrid"
        text = client.get("/metrics").text
    assert (
        metric_value(text, "robeserve_model_placement", model="dlrm-full", version="1", placement="hybrid")
        == 0
    )
    assert (
        metric_value(text, "robeserve_model_placement", model="dlrm-full", version="3", placement="hybrid")
        == 1
    )


def test_served_models_share_the_device_budget(
    start_service: Callable[..., ServiceProcess], exported: dict[str, Path], tmp_path: Path
) -> None:
    """dlrm-full (144.5 kB whole) and dlrm-hash (40.5 kB whole, 24.7 kB dense) each fit 175 kB alone, not
    together: the first loaded (names in order) is placed device, the second hybrid. A reload of dlrm-full
    is not charged for the version it replaces; a third model that fits in neither way is refused with
    the bytes it needs and the bytes left, and the others keep serving."""
    root = tmp_path / "models"
    for method in ("full", "hash"):
        shutil.copytree(exported[method].parent, root / f"dlrm-{method}")
    service = start_service(
        root, ROBESERVE_GPU_MEMORY_LIMIT="175kB", ROBESERVE_ADMIN_TOKEN=ADMIN_TOKEN,
        ROBESERVE_INTRA_OP_THREADS="1", ROBESERVE_POLL_INTERVAL_S="0",
    )  # fmt: skip
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def placements(client: httpx.Client) -> tuple[dict[str, str], str]:
        seen = {name: client.get(f"/v2/models/{name}").json() for name in ("dlrm-full", "dlrm-hash")}
        return {name: meta["placement"] for name, meta in seen.items()}, client.get("/metrics").text

    with service.client() as client:
        placed, text = placements(client)
        assert placed == {"dlrm-full": "device", "dlrm-hash": "hybrid"}
        hash_meta = client.get("/v2/models/dlrm-hash").json()
        assert hash_meta["device_bytes"] == 24_652, hash_meta
        assert "30.5 kB (30460 bytes) left on the device" in hash_meta["placement_reason"]
        assert "other models hold 144.5 kB (144540 bytes): dlrm-full" in hash_meta["placement_reason"]
        status = client.get("/v1/status").json()
        assert status["device_budget_bytes"] == 175_000
        assert status["device_bytes_held"] == 144_540 + 24_652
        # version 2 of dlrm-full: 144.5 kB against 175 kB less dlrm-hash's 24.7 kB -> device again
        _with_card(exported["full"], root / "dlrm-full" / "2", lambda card: card.update(version=2))
        reloaded = client.post("/v2/repository/models/dlrm-full/load", headers=auth)
        assert reloaded.status_code == 200, reloaded.text
        assert client.get("/v2/models/dlrm-full").json()["versions"] == ["2"]
        # dlrm-robe (40.5 kB, no table to cut at) into the 5.8 kB left -> refused, the others serve on
        shutil.copytree(exported["robe"].parent, root / "dlrm-robe")
        refused = client.post("/v2/repository/models/dlrm-robe/load", headers=auth)
        assert refused.status_code >= 400, refused.text
        error = refused.json()["error"]
        assert "needs 40.5 kB (40468 bytes) on the device" in error, error
        assert "5.8 kB (5808 bytes) left on the device" in error, error
        for name in ("dlrm-full", "dlrm-hash"):
            answer = client.post(f"/v2/models/{name}/infer", json=_body(_batch(4)))
            assert answer.status_code == 200, answer.text
        placed, text = placements(client)
    assert placed == {"dlrm-full": "device", "dlrm-hash": "hybrid"}
    for model, version, placement, value in (
        ("dlrm-full", "1", "device", 0), ("dlrm-full", "2", "device", 1), ("dlrm-full", "2", "hybrid", 0),
        ("dlrm-hash", "1", "hybrid", 1), ("dlrm-hash", "1", "device", 0),
    ):  # fmt: skip
        labels = {"model": model, "version": version, "placement": placement}
        assert metric_value(text, "robeserve_model_placement", **labels) == value, labels
    assert metric_value(text, "robeserve_model_placement", model="dlrm-robe") == 0  # refused: placed nowhere
    log = service.log()
    assert "model 'dlrm-hash' version 1 placement hybrid" in log and "left on the device" in log


def test_hybrid_drains_on_sigterm(
    start_service: Callable[..., ServiceProcess], hybrid_repository: Path
) -> None:
    service = start_service(
        hybrid_repository, ROBESERVE_GPU_MEMORY_LIMIT=SERVED_LIMIT, ROBESERVE_MAX_QUEUE_DELAY_US="600000",
        ROBESERVE_DRAIN_DELAY_S="1.0", ROBESERVE_INTRA_OP_THREADS="1",
    )  # fmt: skip

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=service.url, timeout=30.0) as client:
            responses = await asyncio.gather(
                *(client.post("/v2/models/dlrm-full/infer", json=_body(_batch(2, seed=i))) for i in range(8))
            )
        return [response.status_code for response in responses]

    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(asyncio.run, burst())
        time.sleep(0.3)  # the burst now waits in the batching queue (600 ms delay)
        service.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        with service.client() as client:
            assert client.get("/v2/health/ready").status_code == 503
        assert in_flight.result(timeout=30) == [200] * 8
    service.process.wait(timeout=30)
    assert service.process.returncode in (0, -signal.SIGTERM)
    assert "all queues drained" in service.log()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpu-memory-limit", "5XB"], "gpu_memory_limit"),
        (["--gpu-memory-limit", "900000TB"], "is larger than"),
        (["--placement", "gpu"], "unknown placement"),
        (["--hybrid-threads", "0,1"], "at least 1 thread"),
    ],
)
def test_bad_placement_settings_are_one_line_errors(
    args: list[str], message: str, hybrid_repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.__main__ import main

    assert main(["--repository", str(hybrid_repository), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
