"""Localization baselines: weighted kNN (exact on a toy set, 8.40 m on UJIIndoorLoc) and MLP regression."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.noble.baselines import CoordinateRegressor, KnnConfig, WeightedKnn
from training.noble.data import UjiSplit, load_splits, write_synthetic_uji
from training.noble.metrics import evaluate
from training.noble.train import NobleTrainConfig

SHARED_UJI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ujiindoorloc"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy() -> UjiSplit:
    rssi = np.full((4, 520), 100.0, dtype=np.float32)
    rssi[:, 0] = [-30, -50, -70, -90]
    return UjiSplit(rssi, np.array([0.0, 10, 20, 30]), np.zeros(4), np.array([0, 0, 1, 1]),
                    np.array([0, 0, 0, 2]), np.arange(4), np.arange(4))


def test_knn_inverse_distance_weights_and_votes() -> None:
    knn = WeightedKnn(_toy(), KnnConfig(k=2))
    query = np.full((1, 520), 100.0, dtype=np.float32)
    query[0, 0] = -40
    index, distance = knn.neighbours(query)
    assert index.tolist() == [[1, 0]]  # powed: -50 dBm is nearer to -40 than -30 is
    features = ((np.array([-30.0, -50, -40]) + 104) / 104) ** np.e
    np.testing.assert_allclose(distance[0], np.abs(features[[1, 0]] - features[2]), rtol=1e-5)
    pred = knn.predict(query)
    weights = 1 / (distance[0] + 1e-6)
    assert pred.longitude[0] == pytest.approx(10 * weights[0] / weights.sum())
    assert pred.floor.tolist() == [0] and pred.building.tolist() == [0]
    with pytest.raises(ValueError, match="exceeds"):
        WeightedKnn(_toy(), KnnConfig(k=5))


@pytest.mark.skipif(not SHARED_UJI.is_dir(), reason="UJIIndoorLoc not in ../shared/data")
def test_knn_k3_reproduces_8_40_m_on_the_validation_file() -> None:
    train, validation = load_splits(SHARED_UJI)
    metrics = evaluate(WeightedKnn(train, KnnConfig(k=3)).predict(validation.rssi), validation.truth())
    assert metrics.mean_error_m == pytest.approx(8.40, abs=0.01)
    assert metrics.building_hit > 0.99 and metrics.floor_hit > 0.93


def test_coordinate_regression_learns_positions(tmp_path: Path) -> None:
    data_dir = write_synthetic_uji(tmp_path, train_rows=600, validation_rows=100, seed=5)
    train, validation = load_splits(data_dir)
    config = NobleTrainConfig(epochs=10, hidden=(64,), batch_size=32, lr=1e-2)
    metrics = evaluate(CoordinateRegressor(train, config).predict(validation.rssi), validation.truth())
    assert metrics.building_hit > 0.9 and metrics.mean_error_m < 12.0  # chance is ~20 m
