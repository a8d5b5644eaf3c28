"""``python -m export.demo``, DLRM part: every demo DLRM trains under the same early-stopping rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from export import demo


def test_every_dlrm_trains_with_early_stopping_and_only_the_embedding_differs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands: dict[str, list[str]] = {}
    monkeypatch.setattr(demo, "_run", lambda step, args: commands.__setitem__(step, args))
    config = demo.DemoConfig(tmp_path / "models", tmp_path / "work")
    for method in demo.DLRM_METHODS:
        run_dir = demo._train_dlrm(config, tmp_path / "shards", method)
        assert run_dir == tmp_path / "work" / "runs" / f"dlrm-{method}"
    assert config.eval_every() == 80_000 // 1024 // 2  # twice per epoch of the 80% training rows

    def flags(args: list[str]) -> dict[str, str]:
        return {a: b for a, b in zip(args, [*args[1:], ""], strict=True) if a.startswith("--")}

    seen = {method: flags(commands[f"train dlrm-{method}"]) for method in demo.DLRM_METHODS}
    for method, given in seen.items():
        assert given["--embedding"] == method and given["--patience"] == "1" and given["--epochs"] == "2"
        assert given["--eval-every"] == str(config.eval_every()) and "--resume" in given
        assert ("--compression" in given) == (method != "full")
    shared = [{k: v for k, v in given.items() if k not in ("--embedding", "--compression", "--out")}
              for given in seen.values()]
    assert all(s == shared[0] for s in shared)


def test_a_finished_run_is_not_trained_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = demo.DemoConfig(tmp_path / "models", tmp_path / "work")
    run = tmp_path / "work" / "runs" / "dlrm-robe"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"")  # an interrupted run: resumed
    monkeypatch.setattr(demo, "_run", lambda step, args: pytest.fail("finished runs are kept"))
    with pytest.raises(pytest.fail.Exception):
        demo._train_dlrm(config, tmp_path / "shards", "robe")
    (run / "metrics.json").write_text("{}")  # a finished one: kept
    assert demo._train_dlrm(config, tmp_path / "shards", "robe") == run


@pytest.mark.parametrize(("kwargs", "message"), [({"patience": 0}, "patience >= 1"),
                                                 ({"epochs": 0}, "epochs > 0")])
def test_bad_demo_settings(tmp_path: Path, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        demo.DemoConfig(tmp_path, tmp_path, **kwargs)  # type: ignore[arg-type]
