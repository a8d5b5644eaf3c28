"""``python -m training.dlrm.lma_collisions``: the collision measurements on data whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.dlrm import lma_collisions as lc
from training.dlrm.embeddings import Method
from training.dlrm.factory import EmbeddingSpec


def _data(rows: int = 4000) -> np.ndarray:
    """Feature 1 aliases feature 0 (same rows, J = 1); feature 2 is independent; values 0..39 each."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 40, size=rows)
    return np.stack([base, base + 1000, rng.integers(0, 40, size=rows)], axis=1).astype(np.int64)


def test_aliases_share_every_slot_under_lma_and_almost_none_under_robe() -> None:
    categorical = _data()
    methods = {"robe Z=1": EmbeddingSpec(Method.ROBE, 1, 0), "lma": lc.lma_spec(""),
               "lma k=4": lc.lma_spec("--lma-k 4")}
    # a budget twice the full tables' (compression 0.5): every token gets a signature
    result = lc.measure(categorical, 0.5, methods, dim=8, pairs=20_000)  # all 120 x 120 pairs
    # every value is in ~2.5% of the rows: all 120 tokens are in the head band, all signed under LMA
    assert result["bands"][0]["tokens"] == 120 and result["bands"][0]["occurrence_share"] == 1.0
    assert result["methods"]["lma"]["bands"][0]["signed_share"] == 1.0
    assert result["methods"]["robe Z=1"]["bands"][0]["signed_share"] == 0.0
    aliases = {m: result["methods"][m]["head_by_jaccard"][2] for m in methods}  # J >= 0.5: the 40 aliases
    assert aliases["lma"]["pairs"] == 2 * 40  # (f0, f1) and (f1, f0) pairs of one value
    assert aliases["lma"]["mean_shared"] == 1.0 == aliases["lma k=4"]["mean_shared"]
    assert aliases["robe Z=1"]["mean_shared"] < 0.2
    unrelated = {m: result["methods"][m]["head_by_jaccard"][0]["mean_shared"] for m in methods}
    assert max(unrelated.values()) < 0.02
    # the other tokens' occurrences on a token's slots: an alias writes to all of them in every one of
    # its rows (~2.5% of rows) under LMA, hardly ever under ROBE
    load = {m: result["methods"][m]["bands"][0]["foreign_load"] for m in methods}
    assert load["lma"] > 0.02 > 0.01 > load["robe Z=1"]
    text = lc.markdown(result)
    assert "| J in [0.5, 1] | 80 |" in text and "head (>= 1% of rows)" in text


def test_foreign_load_counts_other_tokens_occurrences_per_row() -> None:
    tokens = lc.Tokens(np.array([0, 1, 2]), np.array([5, 6, 7]), np.array([10, 20, 30]),
                       np.zeros(3, np.int64), rows=100)
    slots = np.array([[0, 1], [1, 2], [3, 3]])
    # token 0: slot 0 alone, slot 1 shared with token 1 (20 occurrences) -> (0 + 20) / 2 / 100
    assert lc.foreign_load(slots, tokens, m=4).tolist() == pytest.approx([0.1, 0.05, 0.0])


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lc.main(["--data", str(tmp_path / "missing.tsv")]) == 2
    assert capsys.readouterr().err == f"error: data path {tmp_path / 'missing.tsv'} does not exist\n"
    with pytest.raises(ValueError, match="unknown LMA options --lma-q 3"):
        lc.lma_spec("--lma-q 3")
    data = tmp_path / "data.tsv"
    data.write_text("x\n")
    assert lc.main(["--data", str(data), "--lma", "lma k=3:--lma-k 3 --lma-q 1"]) == 2
    assert capsys.readouterr().err == "error: unknown LMA options --lma-q 1\n"
