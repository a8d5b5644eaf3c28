"""Export a NObLe run directory to ONNX: raw RSSI in, position out, preprocessing inside the graph.

Graph: input ``rssi`` FP32 [-1, 520] (dBm, 100 = not detected); outputs ``longitude``, ``latitude`` FP32
[-1] (UTM metres) and ``floor``, ``building`` INT64 [-1]. It holds the powed preprocessing, every
ensemble member, the probability averaging and the checkpoint's decode (``training.noble.decoding``: the
on-plan decode by default), in standard ONNX ops only (opset 18),
so no custom-op library is needed.

Precision: coordinates are computed in metres around the training origin and the origin is added in
float64; only the final cast to FP32 (the served datatype) rounds, to 1/2 ulp: <= 0.25 m for UTM
latitudes near 4.86e6 m, <= 0.0005 m for longitudes near -7,600 m. The model card's metrics are those of
the ONNX outputs on the validation file, i.e. what the service returns.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch

from training.noble.data import UjiNotFound, find_file
from training.noble.metrics import Predictions, evaluate
from training.noble.model import NUM_APS, NobleLocalizer
from training.noble.train import load_noble, predict

logger = logging.getLogger(__name__)

OPSET = 18
MODEL_FILE = "model.onnx"
VERIFY_FILE = "verify.npz"
OUTPUTS = ("longitude", "latitude", "floor", "building")
VERIFY_ROWS = 256


class NobleExportError(RuntimeError):
    """The ONNX graph does not reproduce the torch model."""


def _float32_ulp(values: npt.NDArray[np.floating]) -> float:
    """One float32 unit in the last place at the largest magnitude of ``values``."""
    return float(np.spacing(np.float32(np.max(np.abs(values)))))


def export_graph(model: NobleLocalizer, path: Path) -> None:
    """Write ``model`` (eval mode) as ONNX with a dynamic batch to ``path``."""
    example = torch.full((2, NUM_APS), 100.0)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(model, (example,), dynamo=True, opset_version=OPSET, input_names=["rssi"],
                                output_names=list(OUTPUTS), dynamic_shapes=({0: batch},), verbose=False)
    assert program is not None
    program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)


def run_onnx(path: Path, rssi: npt.NDArray[np.float32], batch_size: int = 1024) -> dict[str, np.ndarray]:
    """The ONNX model's outputs on raw dBm rows [N, 520] (CPU, one thread)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    parts = [session.run(list(OUTPUTS), {"rssi": rssi[i:i + batch_size]})
             for i in range(0, len(rssi), batch_size)]
    return {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(OUTPUTS)}


@torch.no_grad()
def run_torch(model: NobleLocalizer, rssi: npt.NDArray[np.float32]) -> dict[str, np.ndarray]:
    outputs = model(torch.from_numpy(rssi))
    return {name: t.numpy() for name, t in zip(OUTPUTS, outputs, strict=True)}


def compare(torch_out: dict[str, np.ndarray], onnx_out: dict[str, np.ndarray]) -> dict[str, float]:
    """Max |onnx - torch| per output; raises unless coordinates agree within one float32 ulp and the
    floor and building are identical."""
    diffs = {}
    for name in OUTPUTS:
        want, got = torch_out[name], onnx_out[name]
        if want.shape != got.shape or want.dtype != got.dtype:
            raise NobleExportError(
                f"{name}: onnx gives {got.dtype}{got.shape}, torch {want.dtype}{want.shape}")
        diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)), initial=0.0))
        limit = _float32_ulp(want) if want.dtype == np.float32 else 0.0
        if diff > limit:
            raise NobleExportError(f"{name}: onnx differs from torch by {diff:.3g} (> {limit:.3g})")
        diffs[name] = diff
    return diffs


def _validation_rows(state: dict[str, Any]) -> tuple[npt.NDArray[np.float32], Predictions | None]:
    """The standard validation file when the run's data folder is still there, else the rows saved in
    the checkpoint (no truth: metrics then come from the checkpoint)."""
    try:
        from training.data.uji import load_uji

        data = load_uji(find_file(Path(state["data"]["path"]), "validation"))
    except (UjiNotFound, KeyError, OSError, ValueError) as exc:
        logger.warning("validation file unavailable (%s): verifying on the checkpoint's saved rows", exc)
        return np.asarray(state["data"]["verify_rssi"], dtype=np.float32), None
    return data.rssi, Predictions(data.longitude, data.latitude, data.floor, data.building)


def export_noble(run_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Write ``out_dir/model.onnx`` and ``out_dir/verify.npz`` from the NObLe run ``run_dir``, check
    onnxruntime against torch on validation rows, and return the model.json fields of this model."""
    model, state = load_noble(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    export_graph(model, path)
    rssi, truth = _validation_rows(state)
    onnx_out, torch_out = run_onnx(path, rssi), run_torch(model, rssi)
    diffs = compare(torch_out, onnx_out)
    logger.info("onnxruntime == torch on %d rows (max diffs %s)", len(rssi), diffs)
    verify: dict[str, Any] = {"input/rssi": rssi[:VERIFY_ROWS]}
    verify |= {f"output/{k}": v[:VERIFY_ROWS] for k, v in torch_out.items()}
    np.savez(out_dir / VERIFY_FILE, **verify)
    if truth is not None:
        served = Predictions(*(onnx_out[name] for name in OUTPUTS))
        metrics: dict[str, Any] = {**evaluate(served, truth).to_dict(), "rows": len(rssi),
                                   "source": "onnx outputs on the UJIIndoorLoc validation file"}
        exact = evaluate(predict(model, rssi, model.decode), truth).to_dict()
        metrics["float64_mean_error_m"] = exact["mean_error_m"]
    else:
        metrics = {k: v for k, v in state["metrics"].items() if isinstance(v, int | float)}
        metrics["source"] = "checkpoint (validation file unavailable at export)"
    float_spec = {"datatype": "FP32", "shape": [-1]}
    return {
        "task": "localization",
        "inputs": [{"name": "rssi", "datatype": "FP32", "shape": [-1, NUM_APS]}],
        "outputs": [{"name": "longitude", **float_spec}, {"name": "latitude", **float_spec},
                    {"name": "floor", "datatype": "INT64", "shape": [-1]},
                    {"name": "building", "datatype": "INT64", "shape": [-1]}],
        "embedding": {"method": "none"},
        "parameter_bytes": int(sum(t.numel() * t.element_size() for t in model.state_dict().values())),
        "metrics": metrics,
        "dataset": "UJIIndoorLoc (trainingData.csv; metrics on validationData.csv)",
        "custom_ops": False,
        "output_atol": {name: _float32_ulp(torch_out[name]) for name in ("longitude", "latitude")},
        "preprocessing": "rssi 100 (not detected) -> -104 dBm; ((rssi + 104) / 104) clipped to [0, 1], ** e",
        "decode": model.decode.to_dict(),
        "noble": {"members": len(model.members), "cell_sizes": list(model.cell_sizes),
                  "top_k": model.decode.top_k, "num_cells": list(model.config.num_cells)},
    }

