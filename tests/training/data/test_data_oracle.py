"""The oracle of a synthetic file: ceiling, no-per-value and per-budget AUCs of the planted logits."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from training.data.__main__ import main
from training.data.errors import DataError
from training.data.oracle import exact_auc, kept_values, load_generator, oracle_table
from training.data.synth import SyntheticCriteo
from training.data.synth_config import SynthConfig
from training.data.synth_file import write_synth_criteo

ROWS = 100_000


@pytest.fixture(scope="module")
def v2_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("oracle") / "v2.tsv"
    write_synth_criteo(path, ROWS, seed=5)
    return path


def test_table_shape_monotone_and_below_ceiling(v2_file: Path) -> None:
    dim = 16
    budgets = [0, 100 * 4 * dim, 3000 * 4 * dim, 30_000 * 4 * dim, 10**9]
    table = oracle_table(v2_file, budgets, dim)
    assert table["split"] == "test" and table["rows_scored"] == ROWS - int(0.8 * ROWS) - int(0.1 * ROWS)
    rows = table["rows"]
    assert [r["budget_bytes"] for r in rows] == budgets
    assert [r["values_kept"] for r in rows][:4] == [0, 100, 3000, 30_000]
    assert rows[-1]["values_kept"] == table["distinct_train_values"]
    assert table["full_table_bytes"] == table["distinct_train_values"] * dim * 4
    assert 0 < table["train_values_seen_10_times"] < table["distinct_train_values"]
    aucs = [r["auc"] for r in rows]
    assert aucs[0] == table["no_per_value_auc"]
    assert all(later >= earlier - 0.002 for earlier, later in itertools.pairwise(aucs))
    assert aucs[-1] > aucs[0] + 0.01  # the per-value effects matter
    # the true logits are the best scores in expectation; on 10K rows a near-complete budget may tie
    # them within sampling noise (measured: +0.00012 at all values kept)
    assert all(table["ceiling_auc"] >= auc - 0.001 for auc in aucs)
    assert table["ceiling_auc"] >= aucs[-2]


def test_ceiling_is_the_true_logits_and_keep_all_on_train_equals_it(v2_file: Path) -> None:
    generator, _ = load_generator(v2_file)
    test = generator.rows(int(0.9 * ROWS), ROWS)
    table = oracle_table(v2_file, [], 16)
    assert table["ceiling_auc"] == round(exact_auc(test.labels, test.logits), 6)
    # on the train split every value is seen, so an unlimited budget is the true model
    train = oracle_table(v2_file, [10**10], 16, split="val", compressions=[1])
    assert train["rows"][-1]["auc"] <= train["ceiling_auc"]
    on_train = oracle_table(v2_file, [10**10], 16, split="train")
    assert on_train["rows"][0]["auc"] == on_train["ceiling_auc"]


def test_compressions_are_ratios_of_full_tables(v2_file: Path) -> None:
    table = oracle_table(v2_file, [], 8, compressions=[4, 1000])
    full = table["full_table_bytes"]
    assert [r["budget_bytes"] for r in table["rows"]] == [full // 1000, full // 4]
    assert [r["compression"] for r in table["rows"]] == [1000, 4]


def test_kept_values_are_the_most_frequent_across_features() -> None:
    counts = [np.array([0, 5, 1, 0]), np.array([0, 9, 0, 5, 2])]
    keep = kept_values(counts, 3)
    assert keep[0].tolist() == [False, True, False, False]
    assert keep[1].tolist() == [False, True, False, True, False]
    everything = kept_values(counts, 100)  # never a value unseen in train
    assert everything[0].tolist() == [False, True, True, False] and not everything[1][2]


def test_exact_auc_with_ties() -> None:
    assert exact_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert exact_auc(np.array([0, 1]), np.array([1.0, 1.0])) == 0.5
    assert np.isnan(exact_auc(np.array([1, 1]), np.array([0.0, 1.0])))


def test_null_control_and_pre_v2_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "null.tsv"
    write_synth_criteo(path, 20_000, seed=1, config=SynthConfig.null_control())
    sidecar = path.with_name(path.name + ".meta.json")
    meta = json.loads(sidecar.read_text())
    for key in ("rarity_decay", "head_share", "aliases"):  # as written before generator v2
        del meta["config"][key]
    sidecar.write_text(json.dumps(meta))
    generator, _ = load_generator(path)
    assert generator.config.is_null_control
    assert oracle_table(path, [1000], 4)["generator"] == "null-control"


def test_refuses_files_it_cannot_regenerate(tmp_path: Path) -> None:
    path = tmp_path / "s.tsv"
    write_synth_criteo(path, 3000, seed=1)
    other = tmp_path / "other.tsv"
    write_synth_criteo(other, 3000, seed=2)
    path.with_name("s.tsv.meta.json").write_bytes(other.with_name("other.tsv.meta.json").read_bytes())
    with pytest.raises(DataError, match="differ from what seed 2"):
        load_generator(path)
    with pytest.raises(DataError, match=r"no bare\.tsv\.meta\.json"):
        load_generator(tmp_path / "bare.tsv")
    with pytest.raises(ValueError, match="dim"):
        oracle_table(other, [100], 0)


def test_cli(tmp_path: Path, v2_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.json"
    code = main(["--log-level", "WARNING", "oracle", "--data", str(v2_file), "--budget-bytes", "6400",
                 "--compression", "64", "--dim", "16", "--out", str(out)])
    assert code == 0 and "ceiling AUC" in capsys.readouterr().out
    table = json.loads(out.read_text())
    assert {"ceiling_auc", "no_per_value_auc", "rows"} <= set(table) and len(table["rows"]) == 2
    png = tmp_path / "o.png"
    assert main(["oracle-plot", str(out), str(out), "--labels", "a,b", "--out", str(png)]) == 0
    assert png.stat().st_size > 20_000
    code = main(["oracle", "--data", str(tmp_path / "none.tsv"), "--budget-bytes", "1", "--dim", "4",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error: ") and "\n" not in err
    code = main(["oracle", "--data", str(v2_file), "--dim", "4", "--out", str(out)])
    assert code == 1 and "--budget-bytes or --compression" in capsys.readouterr().err


def test_generator_parameters_need_no_storage(v2_file: Path) -> None:
    # the sidecar holds no per-value table: a few KB whatever the cardinalities
    assert v2_file.with_name("v2.tsv.meta.json").stat().st_size < 20_000
    assert sum(SyntheticCriteo(seed=5).cardinalities) > 3_000_000
