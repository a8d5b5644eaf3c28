"""Generator v2: rarity-scaled effects, real top-value shares, aliased groups; the null control is v1."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from training.data.__main__ import main
from training.data.stats import DEPENDENCY_ROWS, dependency_rates
from training.data.synth import NUM_CATEGORICAL, SyntheticCriteo, _value_noise
from training.data.synth_config import ALIAS_GROUPS, REAL_TOP1_SHARE, SynthConfig
from training.data.synth_file import write_synth_criteo

# Recorded with the generator before v2 (commit a7cc5fa): `synth-criteo --rows 40000 --seed 3
# --chunk-rows 7000`; the null control must reproduce these bytes and this ceiling.
V1_SHA256 = "e47133f2c1023a266be879ef2f64ce8dc2a2136786ab7e3ddf5a3dc2f8cf52e8"
V1_CEILING_AUC = 0.797182
# Dependency rates measured on ../shared/data/criteo/criteo_15k.tsv.gz (docs/data.md), leader -> member.
REAL_RATES = {(2, 3): 0.957, (2, 11): 0.966, (2, 15): 0.997, (2, 20): 0.978, (2, 23): 0.998,
              (2, 25): 0.784, (6, 10): 0.930, (6, 12): 0.979, (14, 1): 0.991, (14, 13): 0.998,
              (14, 17): 0.974}


def top_value_share(column: np.ndarray) -> float:
    present = column[column != 0]
    return float(np.unique(present, return_counts=True)[1].max() / present.size)


@pytest.fixture(scope="module")
def v2_rows():
    return SyntheticCriteo(seed=7).rows(0, DEPENDENCY_ROWS)


@pytest.fixture(scope="module")
def null_rows():
    return SyntheticCriteo(seed=7, config=SynthConfig.null_control()).rows(0, DEPENDENCY_ROWS)


def test_null_control_reproduces_v1_bit_for_bit(tmp_path: Path) -> None:
    path = tmp_path / "null.tsv"
    meta = write_synth_criteo(path, 40_000, seed=3, config=SynthConfig.null_control(), chunk_rows=7000)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == V1_SHA256
    assert meta["ceiling_auc"] == V1_CEILING_AUC
    assert SynthConfig.null_control().is_null_control and not SynthConfig().is_null_control


def test_v2_differs_from_null_and_is_deterministic_across_chunkings(tmp_path: Path) -> None:
    write_synth_criteo(tmp_path / "a.tsv", 20_000, seed=3)
    write_synth_criteo(tmp_path / "b.tsv", 20_000, seed=3, chunk_rows=3001)
    write_synth_criteo(tmp_path / "n.tsv", 20_000, seed=3, config=SynthConfig.null_control())
    a = (tmp_path / "a.tsv").read_bytes()
    assert a == (tmp_path / "b.tsv").read_bytes()
    assert a != (tmp_path / "n.tsv").read_bytes()
    meta = json.loads((tmp_path / "a.tsv.meta.json").read_text())
    assert meta["config"]["aliases"] is True and meta["parameters"]["alias_groups"][0]["leader"] == "C3"
    assert meta["variant"] == "v2"
    assert json.loads((tmp_path / "n.tsv.meta.json").read_text())["variant"] == "null-control"


def test_rarity_decay_moves_effect_variance_to_frequent_values() -> None:
    column = 2  # C3, about a million values
    ranks = np.arange(1, int(SyntheticCriteo(seed=1).cardinalities[column]) + 1, dtype=np.int64)
    own = _value_noise(SyntheticCriteo(seed=1).noise_keys[column], ranks, 0, 1)[:, 0]
    variances = {}
    for decay in (0.0, 0.5, 1.0):
        generator = SyntheticCriteo(seed=1, config=SynthConfig(rarity_decay=decay))
        effect = own * generator.rarity_scale(column, ranks)
        head, tail = np.var(effect[:1000]), np.var(effect[100_000:])
        # the mean variance over rows (ranks drawn by the feature's Zipf law) stays 1
        law = ranks.astype(float) ** -generator.exponents[column]
        row_mean = np.sum(law / law.sum() * generator.rarity_scale(column, ranks) ** 2)
        assert row_mean == pytest.approx(1.0, rel=1e-6)
        variances[decay] = head / tail
    assert variances[0.0] == pytest.approx(1.0, abs=0.15)  # v1: every value alike
    assert variances[0.5] > 20 and variances[1.0] > 20 * variances[0.5]


def test_rarity_decay_is_a_knob_of_the_oracle(tmp_path: Path) -> None:
    from training.data.oracle import oracle_table

    recovered = {}
    for decay in (0.0, 1.0):
        path = tmp_path / f"d{decay}.tsv"
        write_synth_criteo(path, 60_000, seed=2, config=SynthConfig(rarity_decay=decay))
        table = oracle_table(path, [], 16, compressions=[100])
        gap = table["ceiling_auc"] - table["no_per_value_auc"]
        recovered[decay] = (table["rows"][0]["auc"] - table["no_per_value_auc"]) / gap
    # with decay, 1% of the full-table memory recovers far more of the per-value signal
    assert recovered[1.0] > recovered[0.0] + 0.25


def test_aliases_follow_the_real_dependency_rates(v2_rows, null_rows) -> None:
    v2 = dependency_rates(v2_rows.categorical)
    null = dependency_rates(null_rows.categorical)
    for (leader, member), real in REAL_RATES.items():
        assert abs(v2[leader, member] - real) < 0.04, (leader, member, v2[leader, member], real)
        assert null[leader, member] < 0.45
    configured = {(leader, g): p for leader, members in ALIAS_GROUPS for g, p in members}
    assert all(0.75 <= p <= 0.99 for p in configured.values())
    # aliased values stand for one entity: members of a group agree with each other too
    assert v2[3, 23] > 0.9 and v2[11, 15] > 0.9 and v2[10, 12] > 0.75
    # ... while a coarse member groups several leader values (fan-in), as in the real sample
    for member, leader, real in ((3, 2, 0.589), (23, 2, 0.448), (10, 6, 0.612), (17, 14, 0.540)):
        assert abs(v2[member, leader] - real) < 0.12, (member, leader, v2[member, leader], real)


def test_small_features_have_the_real_head(v2_rows, null_rows) -> None:
    for column in (0, 4, 5, 7, 8, 13, 16, 18, 22):  # C1, C5, C6, C8, C9, C14, C17, C19, C23
        assert abs(top_value_share(v2_rows.categorical[:, column]) - REAL_TOP1_SHARE[column]) < 0.05
    assert top_value_share(null_rows.categorical[:, 0]) < 0.15  # v1: C1's top value ~10%
    assert top_value_share(v2_rows.categorical[:, 0]) > 0.4


def test_dependency_rates_by_hand() -> None:
    a = np.array([1, 1, 1, 2, 2, 3, 4, 4])
    b = np.array([5, 5, 6, 7, 7, 8, 9, 0])  # last row: B missing
    rates = dependency_rates(np.stack([a, b], axis=1))
    # A -> B over rows where both are present and A repeats: A=1 (3 rows, best 2), A=2 (2 rows, best 2)
    assert rates[0, 1] == pytest.approx(4 / 5)
    # B -> A: B=5 (2 rows, both A=1), B=7 (2 rows, both A=2)
    assert rates[1, 0] == 1.0
    assert np.isnan(rates[0, 0])


def test_cli_null_control_and_switches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, extra in (("null", ["--null-control"]), ("noalias", ["--no-aliases"]), ("v2", [])):
        code = main(["--log-level", "WARNING", "synth-criteo", "--rows", "2000", "--seed", "3",
                     "--out", str(tmp_path / f"{name}.tsv"), *extra])
        assert code == 0
    capsys.readouterr()
    config = {
        n: json.loads((tmp_path / f"{n}.tsv.meta.json").read_text())["config"] for n in ("null", "noalias")
    }
    assert config["null"]["rarity_decay"] == 0 and not config["null"]["aliases"]
    assert config["noalias"]["rarity_decay"] == SynthConfig().rarity_decay > 0
    assert not config["noalias"]["aliases"]
    assert config["noalias"]["head_share"]
    reference = tmp_path / "ref.tsv"
    write_synth_criteo(reference, 2000, seed=3, config=SynthConfig.null_control())
    assert (tmp_path / "null.tsv").read_bytes() == reference.read_bytes()
    png = tmp_path / "compare.png"
    code = main(["--log-level", "WARNING", "stats", str(tmp_path / "v2.tsv"), str(tmp_path / "null.tsv"),
                 "--dependencies", "--plot-compare", str(png), "--labels", "v2,null"])
    assert code == 0 and "dependency rates on the first 2000 rows" in capsys.readouterr().out
    assert png.stat().st_size > 20_000
    code = main(["stats", str(tmp_path / "v2.tsv"), "--plot-compare", str(png), "--labels", "a,b"])
    assert code == 1 and "--labels names 2 files, 1 given" in capsys.readouterr().err


def test_every_feature_keeps_its_missing_rate_and_range(v2_rows) -> None:
    ids = v2_rows.categorical
    assert ids.shape == (DEPENDENCY_ROWS, NUM_CATEGORICAL) and ids.min() >= 0 and ids.max() < 1 << 32
    missing = (ids == 0).mean(axis=0)
    from training.data.synth_config import CATEGORICAL_MISSING

    np.testing.assert_allclose(missing, CATEGORICAL_MISSING, atol=0.02)
