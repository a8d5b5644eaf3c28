"""NObLe: preprocessing, cells, decoding, metrics, training on synthetic fingerprints, checkpoint, CLI."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from training.noble.cli import main as noble_main
from training.noble.data import load_splits, user_holdout, write_synthetic_uji
from training.noble.metrics import Predictions, evaluate
from training.noble.model import (
    CellGrid,
    Decode,
    DecodeConfig,
    NobleConfig,
    NobleLocalizer,
    NobleNet,
    PowedRssi,
    RelativeRssi,
    powed_rssi,
)
from training.noble.train import NobleTrainConfig, augment, load_noble, predict, train_noble

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_uji(tmp_path_factory.mktemp("uji"), train_rows=600, validation_rows=120, seed=3)


def test_powed_preprocessing_matches_numpy_and_formula() -> None:
    rssi = np.array([[100, -104, -110, -52, 0, -30]], dtype=np.float32)
    expected = np.array([[0, 0, 0, 0.5**math.e, 1, (74 / 104) ** math.e]], dtype=np.float32)
    np.testing.assert_allclose(powed_rssi(rssi), expected, rtol=1e-6)
    np.testing.assert_allclose(PowedRssi()(torch.from_numpy(rssi)).numpy(), expected, rtol=1e-6)


def test_relative_channel_is_gain_free() -> None:
    rssi = torch.tensor([[100.0, -40.0, -60.0, -80.0, -95.0, 100.0]])
    relative = RelativeRssi(40.0)
    expected = torch.tensor([[0.0, 1.0, 0.5, 0.0, 0.0, 0.0]])  # strongest -> 1, 40 dB below -> 0
    torch.testing.assert_close(relative(rssi), expected)
    louder = torch.where(rssi == 100.0, rssi, rssi + 7.0)  # another phone's gain: every reading +7 dB
    torch.testing.assert_close(relative(louder), expected)
    torch.testing.assert_close(relative(torch.full((1, 6), 100.0)), torch.zeros(1, 6))  # nothing seen
    net = NobleNet(NobleConfig(num_cells=(3,), hidden=(8,), relative_db=40.0))
    first = net.body[0]
    assert isinstance(first, torch.nn.Linear) and first.in_features == 2 * 520
    assert net.preprocess(torch.full((2, 520), -50.0)).shape == (2, 1040)
    with pytest.raises(ValueError, match="relative_db"):
        NobleConfig(num_cells=(3,), relative_db=-1.0)
    with pytest.raises(ValueError, match="span_db"):
        RelativeRssi(0.0)


def test_cell_grid_labels_and_centres_are_means_of_members() -> None:
    xy = np.array([[0.5, 0.5], [1.5, 1.0], [2.5, 0.5], [0.5, 0.5]])
    building_floor = np.array([0, 0, 0, 6])
    grid, labels = CellGrid.fit(xy, building_floor, size=2.0)
    assert len(grid) == 3  # (bf 0, cell 0,0), (bf 0, cell 1,0), (bf 6, cell 0,0): floors never share cells
    assert labels[0] == labels[1] != labels[2] != labels[3]
    np.testing.assert_allclose(grid.centres[labels[0]], [1.0, 0.75])
    np.testing.assert_array_equal(grid.building_floor[labels], building_floor)
    with pytest.raises(ValueError, match="positive"):
        CellGrid.fit(xy, building_floor, size=0.0)


def _fixed_localizer(cell_logits: list[float], top_k: int) -> NobleLocalizer:
    """A one-member localizer whose cell head always outputs ``cell_logits`` (building 0 floor 1 favoured)."""
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    grid = CellGrid(2.0, centres, np.array([1, 1, 6]))
    net = NobleNet(NobleConfig(num_cells=(3,), hidden=(4,), top_k=top_k))
    with torch.no_grad():
        for head, logits in ((net.cell_heads[0], cell_logits), (net.building_head, [5.0, 0.0, 0.0]),
                             (net.floor_head, [0.0, 5.0, 0.0, 0.0, 0.0])):
            assert isinstance(head, torch.nn.Linear)
            head.weight.zero_()
            head.bias.copy_(torch.tensor(logits))
    return NobleLocalizer([net.eval()], [grid], origin=(100.0, 200.0)).eval()


@torch.no_grad()
def test_decodes_centre_and_weighted_top_k() -> None:
    logits = [math.log(0.5), math.log(0.3), math.log(0.2)]
    rssi = torch.full((2, 520), 100.0)
    xy, floor, building = _fixed_localizer(logits, top_k=2).predict(rssi, Decode.TOPK)
    np.testing.assert_allclose(xy.numpy(), [[10 * 0.3 / 0.8, 0.0]] * 2, rtol=1e-5)
    assert floor.tolist() == [1, 1] and building.tolist() == [0, 0]
    xy, _, _ = _fixed_localizer(logits, top_k=2).predict(rssi, Decode.CENTRE)
    np.testing.assert_allclose(xy.numpy(), [[0.0, 0.0]] * 2)
    longitude, latitude, _, _ = _fixed_localizer(logits, top_k=3)(rssi)
    np.testing.assert_allclose(longitude.numpy(), [103.0, 103.0], rtol=1e-6)
    np.testing.assert_allclose(latitude.numpy(), [202.0, 202.0], rtol=1e-6)


@torch.no_grad()
def test_building_floor_comes_from_cells_and_heads() -> None:
    # the cells put 90% on building 1 floor 1 (bf 6), the heads favour building 0 floor 1: cells win
    localizer = _fixed_localizer([0.0, 0.0, math.log(18.0)], top_k=1)
    _, floor, building = localizer.predict(torch.full((1, 520), 100.0), Decode.TOPK)
    assert (int(building), int(floor)) == (0, 1)  # heads' 0.98 * 0.1 beat cells' 0.9 * 0.0066
    localizer = _fixed_localizer([0.0, 0.0, math.log(1000.0)], top_k=1)
    _, floor, building = localizer.predict(torch.full((1, 520), 100.0), Decode.TOPK)
    assert (int(building), int(floor)) == (1, 1)


def test_metrics_evaal_penalties() -> None:
    truth = Predictions(np.zeros(4), np.zeros(4), np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1]))
    pred = Predictions(np.array([3.0, 0, 0, 0]), np.array([4.0, 1, 0, 0]), np.array([0, 1, 1, 1]),
                       np.array([0, 0, 0, 2]))
    m = evaluate(pred, truth)
    assert m.mean_error_m == pytest.approx(1.5)
    assert m.floor_hit == pytest.approx(0.75) and m.building_hit == pytest.approx(0.75)
    assert m.evaal_error_m == pytest.approx((5 + 1 + 4 + 0 + 50) / 4)
    assert m.p95_error_m == pytest.approx(np.percentile([5, 1, 0, 0], 95))


def test_augmentation_touches_only_detected_aps() -> None:
    rssi = torch.tensor([[100.0, -60.0, -80.0, 100.0]] * 64)
    out = augment(rssi, NobleTrainConfig(offset_db=5, drop_prob=0.5), torch.Generator().manual_seed(0))
    assert (out[:, [0, 3]] == 100).all()
    kept = out[:, 1:3][out[:, 1:3] != 100]
    assert 0 < len(kept) < 128 and kept.max() <= -55 and kept.min() >= -85
    shift = out[:, 1] - rssi[:, 1]
    both = (out[:, 1] != 100) & (out[:, 2] != 100)
    torch.testing.assert_close(shift[both], (out[:, 2] - rssi[:, 2])[both])  # one offset per row


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="finest first"):
        NobleTrainConfig(cell_sizes=(4.0, 2.0))
    with pytest.raises(ValueError, match="drop_prob"):
        NobleTrainConfig(drop_prob=1.0)
    with pytest.raises(ValueError, match="top_k"):
        NobleConfig(num_cells=(3,), top_k=0)


def test_train_checkpoint_round_trip_and_learns(synthetic_dir: Path, tmp_path: Path) -> None:
    train, validation = load_splits(synthetic_dir)
    fit, held = user_holdout(train, (3,))
    assert set(held.user_id.tolist()) == {3} and 3 not in fit.user_id
    config = NobleTrainConfig(cell_sizes=(4.0, 8.0), members=2, epochs=10, hidden=(64,), batch_size=32,
                              lr=1e-2)
    model = train_noble(train, config)
    metrics = evaluate(predict(model, validation.rssi, Decode.TOPK), validation.truth())
    assert metrics.building_hit > 0.95 and metrics.mean_error_m < 8.0  # 40 m floors: chance is ~20 m
    assert noble_main(["--data", str(synthetic_dir), "--out", str(tmp_path / "run"), "--members", "1",
                       "--epochs", "2", "--hidden", "32", "--cell-sizes", "4", "--threads", "1"]) == 0
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(written["decodes"]) == {"served", "centre", "topk", "plan", "building"}
    assert written["parameter_bytes"] > 0
    loaded, state = load_noble(tmp_path / "run")
    assert state["kind"] == "noble" and state["embedding"]["method"] == "none"
    assert loaded.decode == DecodeConfig(Decode.PLAN, 4, None, 4.0)  # the CLI default: plan, finest snap
    rows = validation.rssi[:5]
    again = predict(loaded, rows, Decode.TOPK)
    assert again.longitude.shape == (5,)
    got = evaluate(predict(loaded, validation.rssi, loaded.decode), validation.truth()).to_dict()
    assert got["mean_error_m"] == pytest.approx(written["mean_error_m"], abs=1e-3)


def test_cli_trains_the_configuration_a_results_page_reports(synthetic_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    train = NobleTrainConfig(cell_sizes=(4.0, 8.0), members=1, epochs=1, hidden=(16,), offset_db=3.0,
                             drop_prob=0.1, top_k=2)
    decode = DecodeConfig(Decode.PLAN, 2, (8.0,), 8.0)
    page = tmp_path / "noble.json"
    page.write_text(json.dumps({"served": {"train": asdict(train), "decode": decode.to_dict(), "seed": 0}}))
    assert noble_main(["--data", str(synthetic_dir), "--out", str(tmp_path / "run"), "--from-results",
                       str(page), "--seed", "7"]) == 0
    model, state = load_noble(tmp_path / "run")
    assert state["train"] == {**asdict(train), "seed": 7}
    assert model.decode == decode and model.cell_sizes == (4.0, 8.0)
    page.write_text(json.dumps({"cv": {"rows": []}}))
    assert noble_main(["--data", str(synthetic_dir), "--out", str(tmp_path / "run2"), "--from-results",
                       str(page)]) == 2
    assert "no chosen NObLe configuration" in capsys.readouterr().err


def test_cli_reports_user_mistakes_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert noble_main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert noble_main(["--out", str(tmp_path / "o")]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert noble_main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--cell-sizes", "8,2"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
