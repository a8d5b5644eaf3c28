"""Trainer, metrics, checkpoints and the ``python -m training dlrm`` CLI on small planted-signal data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.dlrm import checkpoint as ckpt
from training.dlrm.embeddings import Method
from training.dlrm.factory import EmbeddingSpec, build_embedding
from training.dlrm.metrics import log_loss, roc_auc
from training.dlrm.model import DLRM, DLRMConfig
from training.dlrm.trainer import AnySplit, Split, TrainConfig, Trainer, batch_rows


def planted_split(rows: int, seed: int, num_dense: int = 3, num_features: int = 4) -> Split:
    """Labels from a logistic model of per-value effects and one dense feature (AUC well above 0.5)."""
    effects = np.random.default_rng(123).normal(0, 1.2, size=(num_features, 40))
    rng = np.random.default_rng(seed)
    categorical = rng.integers(0, 40, size=(rows, num_features))
    dense = rng.exponential(3.0, size=(rows, num_dense)).astype(np.float32)
    logit = effects[np.arange(num_features), categorical].sum(axis=1) - 1.0
    if num_dense:
        logit += np.log1p(dense[:, 0]) - 1.0
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return Split(dense, (categorical * 7919 + 2**40).astype(np.int64), labels)


def make_model(method: Method, train: Split, budget: int | None = None, seed: int = 0) -> DLRM:
    torch.manual_seed(seed)
    config = DLRMConfig.preset("tiny", train.dense.shape[1], train.categorical.shape[1])
    spec = EmbeddingSpec(method, block_size=4)
    embedding = build_embedding(spec, config.embedding_dim, train.categorical, budget,
                                torch.Generator().manual_seed(seed))
    return DLRM(config, embedding)


@pytest.mark.parametrize(("method", "budget"), [(Method.FULL, None), (Method.ROBE, 4000), (Method.HASH, 8000),
                                                (Method.LMA, 6000)])
def test_training_learns_the_planted_signal(method: Method, budget: int | None, tmp_path: Path) -> None:
    train, val = planted_split(6000, 0), planted_split(2000, 1)
    model = make_model(method, train, budget)
    trainer = Trainer(model, train, val, TrainConfig(batch_size=128, epochs=3), tmp_path, torch.device("cpu"),
                      {"method": method.value})
    metrics = trainer.fit()
    assert metrics["auc"] > 0.72, metrics["auc"]
    assert metrics["steps"] == 3 * 6000 // 128 + 1
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["auc"] == metrics["auc"] and saved["method"] == method.value


def test_without_dense_features(tmp_path: Path) -> None:
    train, val = planted_split(3000, 0, num_dense=0), planted_split(1000, 1, num_dense=0)
    model = make_model(Method.ROBE, train, 6000)
    metrics = Trainer(model, train, val, TrainConfig(batch_size=100, epochs=2), tmp_path,
                      torch.device("cpu"), {}).fit()
    assert metrics["auc"] > 0.7


def test_early_stop_at_target_auc(tmp_path: Path) -> None:
    train, val = planted_split(6000, 0), planted_split(1000, 1)
    config = TrainConfig(batch_size=64, steps=500, eval_every=10, eval_rows=500, target_auc=0.6)
    model = make_model(Method.FULL, train)
    metrics = Trainer(model, train, val, config, tmp_path, torch.device("cpu"), {}).fit()
    assert metrics["steps"] < 500 and metrics["history"][-2]["auc"] >= 0.6
    assert metrics["val_rows"] == 1000  # the final evaluation uses every row


@pytest.mark.parametrize("method", [Method.HASH, Method.LMA])
def test_resume_continues_exactly(method: Method, tmp_path: Path) -> None:
    train, val = planted_split(2000, 0), planted_split(500, 1)
    straight = make_model(method, train, 5000)
    Trainer(straight, train, val, TrainConfig(batch_size=64, steps=40), tmp_path / "a", torch.device("cpu"),
            {}).fit()
    Trainer(make_model(method, train, 5000), train, val, TrainConfig(batch_size=64, steps=25), tmp_path / "b",
            torch.device("cpu"), {}).fit()
    state = ckpt.load_checkpoint(tmp_path / "b")
    resumed = ckpt.model_from_checkpoint(state).train()
    trainer = Trainer(resumed, train, val, TrainConfig(batch_size=64, steps=40), tmp_path / "b",
                      torch.device("cpu"), {})
    trainer.resume(state)
    metrics = trainer.fit()
    assert metrics["steps"] == 40
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_checkpoint_layout(tmp_path: Path) -> None:
    train, val = planted_split(1000, 0), planted_split(300, 1)
    model = make_model(Method.LMA, train, 5000)
    Trainer(model, train, val, TrainConfig(batch_size=100, steps=3), tmp_path, torch.device("cpu"),
            {"method": "lma"}, data={"path": "x"}).fit()
    state = ckpt.load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["kind"] == "dlrm" and state["embedding"]["method"] == "lma"
    params = model.compressed_embedding.hash_params()
    assert params is not None and state["embedding"]["hash"]["a1"] == params.a1.tolist()
    assert set(state["embedding"]["arrays"]) == {"keys", "offsets", "signatures"}
    assert state["model_config"]["top_mlp"] == [64, 32, 1] or state["model_config"]["top_mlp"] == (64, 32, 1)
    assert state["data"] == {"path": "x"} and state["train"]["step"] == 3
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load_checkpoint(tmp_path / "missing")


def test_batches_split_the_global_batch_across_ranks() -> None:
    whole = next(batch_rows(100, 20, seed=3, start_step=2))
    parts = [next(batch_rows(100, 20, seed=3, start_step=2, rank=r, world_size=2)) for r in range(2)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    epoch = [next(batch_rows(100, 20, seed=3, start_step=s)) for s in range(5)]
    assert sorted(np.concatenate(epoch).tolist()) == list(range(100))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=30))
def test_auc_equals_pairwise_definition(pairs: list[tuple[bool, int]]) -> None:
    labels = np.asarray([p[0] for p in pairs])
    scores = np.asarray([p[1] for p in pairs], dtype=np.float64)
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        assert np.isnan(roc_auc(labels, scores))
        return
    expected = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg))
    assert roc_auc(labels, scores) == pytest.approx(expected, abs=1e-12)


def test_log_loss() -> None:
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert log_loss([1], [1.0]) == pytest.approx(-np.log(1 - 1e-7), abs=1e-9)


@pytest.mark.parametrize(("argv", "message"), [
    (["--embedding", "bloom"], "argument --embedding: invalid choice: 'bloom'"),
    (["--embedding", "robe", "--compression", "10", "--config", "huge"], "argument --config: invalid choice"),
    (["--embedding", "robe", "--compression", "10", "--block-size", "3"], "--block-size 3 must divide"),
    (["--embedding", "robe"], "needs --memory SIZE or --compression X"),
    (["--embedding", "hash", "--memory", "2 parsecs"], "cannot parse memory size"),
    (["--embedding", "robe", "--compression", "10", "--data", "/nonexistent/x"], "data path /nonexistent/x"),
    (["--embedding", "lma", "--compression", "10", "--lma-budget", "disk"],
     "argument --lma-budget: invalid choice: 'disk'"),
])
def test_cli_mistakes_give_one_line(argv: list[str], message: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from training.dlrm.cli import main

    base = ["--data", str(tmp_path), "--out", str(tmp_path / "run")]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_restore_best_keeps_the_best_validation_weights(tmp_path: Path) -> None:
    train, val, test = planted_split(150, 0), planted_split(1000, 1), planted_split(1000, 2)
    config = TrainConfig(batch_size=50, epochs=40, eval_every=12, restore_best=True, lr_embedding=0.5,
                         lr_dense=0.01)  # 150 rows, 40 epochs: full tables overfit well before the end
    trainer = Trainer(make_model(Method.FULL, train), train, val, config, tmp_path, torch.device("cpu"), {},
                      test=test)
    metrics = trainer.fit()
    aucs = [h["auc"] for h in metrics["history"]]
    assert metrics["auc"] == max(aucs) and metrics["best_step"] < metrics["steps"]
    restored = ckpt.model_from_checkpoint(ckpt.load_checkpoint(tmp_path))
    from training.dlrm.trainer import evaluate

    assert evaluate(restored, val, torch.device("cpu"), 512)["auc"] == pytest.approx(metrics["auc"], abs=1e-9)
    assert metrics["test_auc"] > 0.6


def test_preloaded_splits_train_like_memmaps(tmp_path: Path) -> None:
    train, val = planted_split(600, 0), planted_split(200, 1)
    cpu = torch.device("cpu")
    results = []
    for preload in (False, True):
        model = make_model(Method.ROBE, train, 6000)
        splits: tuple[AnySplit, AnySplit] = (train, val)
        if preload:
            splits = (train.preload(cpu), val.preload(cpu))
        config = TrainConfig(batch_size=60, steps=8)
        trainer = Trainer(model, splits[0], splits[1], config, tmp_path / str(preload), cpu, {})
        results.append(trainer.fit()["auc"])
    assert results[0] == results[1]


def test_patience_stops_early_keeps_the_best_and_scores_the_test_split_once(tmp_path: Path) -> None:
    train, val, test = planted_split(150, 0), planted_split(1000, 1), planted_split(800, 2)
    config = TrainConfig(batch_size=50, epochs=60, eval_every=3, patience=3, lr_embedding=0.5, lr_dense=0.01)
    trainer = Trainer(make_model(Method.FULL, train), train, val, config, tmp_path, torch.device("cpu"),
                      {"method": "full"}, test=test)
    metrics = trainer.fit()
    history = metrics["history"]
    aucs = [h["auc"] for h in history]
    best = int(np.argmax(aucs))
    assert metrics["stopped_early"] and metrics["steps"] < 60 * 3  # 150 rows overfit long before 60 epochs
    assert len(history) == best + 1 + 3 and metrics["steps"] == history[-1]["step"]
    assert metrics["auc"] == metrics["val_auc"] == max(aucs) and metrics["best_step"] == history[best]["step"]
    assert metrics["best_epoch"] == pytest.approx(history[best]["step"] * 50 / 150)
    saved = np.load(tmp_path / "test_predictions.npz")
    assert saved["logits"].shape == (800,) and saved["labels"].dtype == np.int8
    np.testing.assert_array_equal(saved["labels"], test.labels)
    assert metrics["test_auc"] == pytest.approx(roc_auc(saved["labels"], saved["logits"]), abs=1e-12)
    assert metrics["test_rows"] == 800 and metrics["ran_on"].startswith("cpu: ")
    # the kept weights are the best validation ones, and they produced the saved test logits
    restored = ckpt.model_from_checkpoint(ckpt.load_checkpoint(tmp_path))
    from training.dlrm.trainer import predict

    logits, _ = predict(restored, test, torch.device("cpu"), 512)
    np.testing.assert_allclose(logits, saved["logits"], rtol=0, atol=1e-6)
    # resuming a run that ran out of patience trains no further
    state = ckpt.load_checkpoint(tmp_path)
    again = Trainer(ckpt.model_from_checkpoint(state).train(), train, val, config, tmp_path,
                    torch.device("cpu"), {"method": "full"}, test=test)
    again.resume(state)
    assert again.fit()["steps"] == metrics["steps"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"patience": 0, "eval_every": 5}, "--patience must be >= 1"),
    ({"patience": 2}, "give --eval-every"),
    ({"patience": 2, "eval_every": 5, "eval_rows": 100}, "drop --eval-rows"),
])
def test_patience_settings_are_checked(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)  # type: ignore[arg-type]
