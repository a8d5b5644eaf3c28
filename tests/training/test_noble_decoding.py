"""NObLe decodes: the on-plan decode stays on the predicted building-floor and near its occupied cells;
settings round-trip; the exported graph computes the same decode."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from export.noble import compare, export_graph, run_onnx, run_torch
from training.noble.decoding import Decode, DecodeConfig, resolution_indices
from training.noble.model import CellGrid, NobleConfig, NobleLocalizer, NobleNet

# building-floor 1: two parallel corridors (y = 0 and y = 20), building-floor 6: one cell far away
CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 20.0], [10.0, 20.0], [500.0, 500.0]])
BUILDING_FLOOR = np.array([1, 1, 1, 1, 6])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _localizer(cell_probs: list[float], decode: DecodeConfig | Decode, grids: int = 1) -> NobleLocalizer:
    """One member whose cell heads output ``cell_probs`` (every resolution the same grid) and whose
    building and floor heads favour building 0, floor 1."""
    grid_list = [CellGrid(2.0 * 2**r, CENTRES, BUILDING_FLOOR) for r in range(grids)]
    net = NobleNet(NobleConfig(num_cells=(len(CENTRES),) * grids, hidden=(4,)))
    with torch.no_grad():
        heads = [*net.cell_heads, net.building_head, net.floor_head]
        biases = [[math.log(p) for p in cell_probs]] * grids + [[5.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0, 0.0]]
        for head, bias in zip(heads, biases, strict=True):
            assert isinstance(head, torch.nn.Linear)
            head.weight.zero_()
            head.bias.copy_(torch.tensor(bias))
    return NobleLocalizer([net.eval()], grid_list, origin=(0.0, 0.0), decode=decode).eval()


@torch.no_grad()
def _xy(model: NobleLocalizer, decode: DecodeConfig) -> np.ndarray:
    xy, floor, building = model.predict(torch.full((1, 520), 100.0), decode)
    assert (int(building), int(floor)) == (0, 1)
    return xy.numpy()[0]


def test_plan_decode_ignores_cells_of_other_building_floors() -> None:
    # 35% of the mass on a cell of another building: the old top-k pulls the point far off the floor
    model = _localizer([0.3, 0.3, 0.025, 0.025, 0.35], Decode.PLAN)
    old = _xy(model, DecodeConfig(Decode.TOPK, 3, None, None))
    np.testing.assert_allclose(old, [(0.3 * 10 + 0.35 * 500) / 0.95, 0.35 * 500 / 0.95], rtol=1e-5)
    new = _xy(model, DecodeConfig(Decode.PLAN, 2, None, None))
    np.testing.assert_allclose(new, [5.0, 0.0], atol=1e-5)  # between the two corridor cells: kept


def test_plan_decode_snaps_points_between_corridors() -> None:
    model = _localizer([0.25, 0.25, 0.25, 0.249, 0.001], Decode.PLAN)
    unsnapped = _xy(model, DecodeConfig(Decode.PLAN, 4, None, None))
    np.testing.assert_allclose(unsnapped, [5.0, 10.0], atol=0.05)  # the middle of nowhere
    snapped = _xy(model, DecodeConfig(Decode.PLAN, 4, None, snap_m=4.0))
    distances = np.linalg.norm(CENTRES[:4] - snapped, axis=1)
    assert distances.min() == pytest.approx(0.0, abs=1e-5)  # now on an occupied cell of the floor
    near = _xy(model, DecodeConfig(Decode.PLAN, 4, None, snap_m=20.0))
    np.testing.assert_allclose(near, unsnapped, atol=1e-6)  # within snap_m: left where it is


def test_building_decode_pools_the_building_floors_and_ends_on_the_predicted_floor() -> None:
    # building 0: floor 1 has cells at (0, 0) and (20, 0); floor 2 has one at (20, 1) holding most mass
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [20.0, 1.0], [500.0, 500.0]])
    grid = CellGrid(2.0, centres, np.array([1, 1, 2, 6]))
    net = NobleNet(NobleConfig(num_cells=(4,), hidden=(4,)))
    with torch.no_grad():
        biases = [[math.log(p) for p in (0.3, 0.1, 0.6, 1e-6)], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0, 0.0]]
        for head, bias in zip([*net.cell_heads, net.building_head, net.floor_head], biases, strict=True):
            assert isinstance(head, torch.nn.Linear)
            head.weight.zero_()
            head.bias.copy_(torch.tensor(bias))
    model = NobleLocalizer([net.eval()], [grid], origin=(0.0, 0.0), decode=Decode.PLAN).eval()
    plan = _xy(model, DecodeConfig(Decode.PLAN, 2, None, None))  # floor 1 only: (0.3 * 0 + 0.1 * 20) / 0.4
    np.testing.assert_allclose(plan, [5.0, 0.0], atol=1e-4)
    pooled = _xy(model, DecodeConfig(Decode.BUILDING, 2, None, 8.0))  # floor 2's cell and floor 1's best
    np.testing.assert_allclose(pooled, [0.6 * 20 / 0.9, 0.6 / 0.9], atol=1e-4)
    assert np.linalg.norm(centres[:2] - pooled, axis=1).min() <= 8.0  # within snap of a floor-1 cell
    snapped = _xy(model, DecodeConfig(Decode.BUILDING, 2, None, 4.0))  # 6.7 m from (20, 0): snapped onto it
    np.testing.assert_allclose(snapped, [20.0, 0.0], atol=1e-5)
    assert model.decode_config(Decode.BUILDING).snap_m == 2.0  # a bare kind snaps beyond the finest cell
    with pytest.raises(ValueError, match="snap_m"):
        DecodeConfig(Decode.BUILDING, 4, None, None)
    assert DecodeConfig(Decode.BUILDING, 8, (4.0,), 2.0).label() == "building k=8 cells 4 m snap 2 m"


def test_centre_and_resolution_subsets() -> None:
    model = _localizer([0.1, 0.6, 0.1, 0.1, 0.1], Decode.CENTRE, grids=2)
    np.testing.assert_allclose(_xy(model, DecodeConfig(Decode.CENTRE, 1, (4.0,), None)), [10.0, 0.0])
    assert resolution_indices((2.0, 4.0), DecodeConfig(cell_sizes=(4.0,))) == [1]
    assert resolution_indices((2.0, 4.0), DecodeConfig()) == [0, 1]
    with pytest.raises(ValueError, match="lacks"):
        resolution_indices((2.0, 4.0), DecodeConfig(cell_sizes=(8.0,)))
    with pytest.raises(ValueError, match="cell sizes"):
        model.decode_config(DecodeConfig(cell_sizes=(16.0,)))


def test_decode_config_round_trip_and_validation() -> None:
    config = DecodeConfig(Decode.PLAN, 8, (4.0, 2.0), 2.0)
    assert config.cell_sizes == (2.0, 4.0)
    assert DecodeConfig.from_dict(config.to_dict()) == config
    assert config.label() == "plan k=8 cells 2/4 m snap 2 m"
    assert DecodeConfig.from_dict("topk", top_k=3) == DecodeConfig(Decode.TOPK, 3, None, None)
    with pytest.raises(ValueError, match="top_k"):
        DecodeConfig(top_k=0)
    with pytest.raises(ValueError, match="snap_m"):
        DecodeConfig(snap_m=0.0)


@pytest.mark.parametrize(("kind", "relative_db"), [(Decode.PLAN, 0.0), (Decode.BUILDING, 40.0)])
def test_exported_graph_computes_the_on_plan_decodes(tmp_path: Path, kind: Decode,
                                                     relative_db: float) -> None:
    torch.manual_seed(0)
    coarse = [0, 2, 4]
    grids = [CellGrid(2.0, CENTRES, BUILDING_FLOOR), CellGrid(4.0, CENTRES[coarse], BUILDING_FLOOR[coarse])]
    net = NobleNet(NobleConfig(num_cells=(5, 3), hidden=(16,), relative_db=relative_db)).eval()
    model = NobleLocalizer([net], grids, (1000.0, 2000.0), DecodeConfig(kind, 2, None, 2.0)).eval()
    rssi = np.random.default_rng(0).uniform(-100, -30, size=(64, 520)).astype(np.float32)
    rssi[:, ::3] = 100.0
    export_graph(model, tmp_path / "model.onnx")
    diffs = compare(run_torch(model, rssi), run_onnx(tmp_path / "model.onnx", rssi))
    assert set(diffs) == {"longitude", "latitude", "floor", "building"}
    # the building decode's per-cell building (an argmax over each cell's one-hot floor, per resolution)
    # depends on buffers only, so the exporter folds it into a constant: the served graph's one ArgMax
    # is the row's building-floor
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    assert [n.op_type for n in graph.node].count("ArgMax") == 1
