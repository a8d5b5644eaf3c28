"""Leave-users-out cross-validation: groups, folds, the decode grid and the staged search."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.noble.data import UjiSplit, load_splits, write_synthetic_uji
from training.noble.decoding import Decode
from training.noble.selection import (
    CrossValidation,
    CvConfig,
    chosen_configs,
    covered_rows,
    decode_grid,
    make_folds,
    user_phone_groups,
)
from training.noble.train import NobleTrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _split(users: list[int], phones: list[int]) -> UjiSplit:
    n = len(users)
    zeros = np.zeros(n)
    return UjiSplit(np.full((n, 520), 100.0, dtype=np.float32), zeros, zeros, zeros.astype(np.int64),
                    zeros.astype(np.int64), np.array(users, dtype=np.int64), np.array(phones, dtype=np.int64))


def test_users_sharing_a_phone_form_one_group() -> None:
    # users 1 and 9 share phone 14; user 2 has phones 3 and 4; user 5 is alone
    split = _split([1, 9, 9, 2, 2, 5], [14, 14, 14, 3, 4, 7])
    groups = user_phone_groups(split)
    assert groups[0] == groups[1] == groups[2]
    assert groups[3] == groups[4] != groups[0]
    assert len(set(groups.tolist())) == 3


def test_folds_never_share_a_user_or_phone_and_cover_every_row() -> None:
    rng = np.random.default_rng(0)
    users = rng.integers(1, 12, 500)
    phones = np.where(users % 4 == 0, 99, users + 100)  # users 4 and 8 share phone 99
    split = _split(users.tolist(), phones.tolist())
    folds = make_folds(split, 3)
    assert np.array_equal(np.sum(folds, axis=0), np.ones(500))  # each row held out exactly once
    for held in folds:
        assert not set(users[held]) & set(users[~held])
        assert not set(phones[held]) & set(phones[~held])
    sizes = [int(m.sum()) for m in folds]
    assert max(sizes) - min(sizes) < 0.5 * max(sizes)  # dealt largest first: roughly balanced
    with pytest.raises(ValueError, match="folds"):
        make_folds(split, 50)


def test_decode_grid_covers_kinds_sizes_and_snapping() -> None:
    grid = decode_grid((2.0, 4.0, 8.0))
    assert len({d.label() for d in grid}) == len(grid)
    assert {d.kind for d in grid} == set(Decode)
    assert any(d.kind is Decode.TOPK and d.top_k == 4 and d.cell_sizes == (2.0, 4.0, 8.0) for d in grid)
    assert {d.snap_m for d in grid if d.kind is Decode.PLAN} == {None, 2.0, 4.0}
    assert {d.cell_sizes for d in grid} >= {(2.0,), (4.0,), (8.0,), (2.0, 4.0), (2.0, 4.0, 8.0), (4.0, 8.0)}


def chosen_relative(result: dict[str, Any]) -> float:
    return float(result["chosen"]["train"]["relative_db"])


def test_staged_search_picks_by_cv_and_never_reads_validation(tmp_path: Path) -> None:
    data = write_synthetic_uji(tmp_path / "uji", train_rows=300, validation_rows=30, seed=4)
    train, _ = load_splits(data)
    (data / "validationData.csv.gz").unlink()  # the search must not need it
    stages: list[bool] = []
    config = CvConfig(base=NobleTrainConfig(members=1, epochs=2, hidden=(32,), cell_sizes=(4.0, 8.0),
                                            batch_size=64, lr=1e-2),
                      folds=3, augmentations=((0.0, 0.0), (6.0, 0.1)), epochs=(2, 3), members=(1, 2),
                      networks=(((32,), 0.0), ((32,), 30.0)), tolerance_m=1000.0)
    result = CrossValidation(train, config, on_stage=lambda r: stages.append(r["complete"])).run()
    assert stages == [False, False, False, True]
    rows = result["rows"]
    assert {r["stage"] for r in rows} == {"1 augmentation", "2 epochs", "3 network", "4 ensemble size"}
    # 2 augmentations + 1 more epoch count + 1 more network + 1 more ensemble size
    assert len(rows) == 5 * len(decode_grid((4.0, 8.0)))
    assert {r["relative_db"] for r in rows if r["stage"] == "3 network"} == {30.0}  # the base is scored
    train_chosen = result["chosen"]["train"]
    networks = [r for r in rows if r["stage"] != "4 ensemble size" and r["epochs"] == train_chosen["epochs"]
                and r["offset_db"] == train_chosen["offset_db"]]  # stage 3's candidates, the base included
    assert {r["relative_db"] for r in networks} == {0.0, 30.0}
    networks = [r for r in networks if r["decode_config"]["kind"] in ("plan", "building")]
    assert chosen_relative(result) == min(networks, key=lambda r: r["cv_covered_mean_error_m"])["relative_db"]
    assert all(len(r["fold_mean_error_m"]) == 3 and sum(r["fold_rows"]) == len(train) for r in rows)
    chosen = result["chosen"]
    assert chosen["train"]["members"] == 1  # a huge tolerance: one net is "as good"
    stage1 = [r for r in rows if r["stage"] == "1 augmentation"]
    best = min((r for r in stage1 if r["decode_config"]["kind"] in ("plan", "building")),
               key=lambda r: r["cv_covered_mean_error_m"])
    chosen_aug = (chosen["train"]["offset_db"], chosen["train"]["drop_prob"])
    assert chosen_aug == (best["offset_db"], best["drop_prob"])
    same = [r for r in rows if r["setting"] == chosen["setting"]]
    on_plan = [r for r in same if r["decode_config"]["kind"] in ("plan", "building")]
    assert chosen["decode"]["kind"] in ("plan", "building")  # only on-plan decodes may be chosen
    assert chosen["cv_covered_mean_error_m"] == min(r["cv_covered_mean_error_m"] for r in on_plan)
    train_config, decode = chosen_configs(chosen)
    assert train_config.members == 1 and decode.label() == chosen["decode_label"]
    # an interrupted run resumed: every candidate scored before is reused, nothing is trained again
    trained: list[str] = []

    def timed(stage: str, work: Callable[..., Any], *args: Any) -> Any:
        trained.append(stage)
        return work(*args)

    again = CrossValidation(train, replace(config, members=(1,)), timed, previous=rows).run()
    assert trained == [] and again["chosen"]["setting"] == chosen["setting"]
    assert all(r.get("reused") for r in again["rows"])


def test_covered_rows_are_near_a_training_position_of_the_same_floor(tmp_path: Path) -> None:
    data = write_synthetic_uji(tmp_path / "uji", train_rows=300, validation_rows=30, seed=4)
    train, _ = load_splits(data)
    fit, held = train.subset(np.arange(len(train)) % 2 == 0), train.subset(np.arange(len(train)) % 2 == 1)
    origin = fit.origin()
    fit_xy, held_xy = fit.local_xy(origin), held.local_xy(origin)
    same_floor = ((held.building[:, None] == fit.building[None, :])
                  & (held.floor[:, None] == fit.floor[None, :]))
    pairwise = np.linalg.norm(held_xy[:, None] - fit_xy[None], axis=2)
    distance = np.where(same_floor, pairwise, np.inf).min(axis=1)
    for radius in (0.5, 4.0, 30.0):
        np.testing.assert_array_equal(covered_rows(fit, held, radius), distance <= radius)
    with pytest.raises(ValueError, match="criterion"):
        CvConfig(criterion="median")
    with pytest.raises(ValueError, match="covered_radius_m"):
        CvConfig(covered_radius_m=0.0)
