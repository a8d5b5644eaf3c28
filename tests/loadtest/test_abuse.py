"""The short abuse suite against a real service on 127.0.0.1: every target of issue 15 must hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.abuse import SHORT, check_targets, run_suite, to_document, to_markdown


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_suite(short=True, work=tmp_path_factory.mktemp("abuse"))


# Liveness latency and goodput are timing figures: the benchmark (``make abuse``) checks them against the
# targets and commits them; here, on a shared machine, they are guarded against the collapse issue 15
# measured before the fixes (2 s probe stalls, goodput ratio 0.04) with a wide margin.
TIMED = ("liveness", "goodput")


def test_every_untimed_target_is_met(suite: dict) -> None:
    failed = [t for t in suite["targets"] if not t["met"] and not t["target"].startswith(TIMED)]
    details = {outcome.name: outcome.unexpected for outcome in suite["outcomes"] if outcome.unexpected}
    assert not failed, (failed, details)


def test_no_collapse_under_big_bodies_and_overload(suite: dict) -> None:
    measured = {t["target"]: t["measured"] for t in suite["targets"]}
    for name in ("big-bodies", "overload-32-clients"):
        assert measured[f"liveness max during {name}"] <= 1000, measured
    assert measured["goodput 32 clients / 2 clients"] >= 0.5, measured


def test_every_attack_got_its_expected_answers(suite: dict) -> None:
    for outcome in suite["outcomes"]:
        assert not outcome.unexpected, (outcome.name, outcome.unexpected, dict(outcome.codes))
        assert outcome.sent > 0 and outcome.timeouts == 0 and outcome.lost == 0, outcome.name


def test_attack_specific_figures(suite: dict) -> None:
    by_name = {outcome.name: outcome for outcome in suite["outcomes"]}
    assert by_name["unknown-names"].extra["series_added"] == 0
    assert by_name["unknown-names"].codes[404] == SHORT.unknown_names + 6
    aborts = by_name["client-aborts"].extra
    assert aborts["counted_499"] == SHORT.aborted_connections and aborts["tracebacks"] == 0
    assert aborts["log_lines_client_closed"] == SHORT.aborted_connections
    assert by_name["slow-bodies"].codes[408] == SHORT.slow_connections
    assert by_name["slow-bodies"].extra["closed_by_server"] == SHORT.slow_connections
    malformed = by_name["methods-malformed-http"].extra
    assert malformed["counted_405"] == malformed["sent_405"] > 0
    assert malformed["counted_malformed_400"] == malformed["sent_400"] > 0
    assert by_name["overload-32-clients"].codes[200] > 0
    drain = by_name["sigterm-drain"]
    assert drain.extra["log_drained"] and drain.extra["connection_close_answers"] > 0
    assert drain.extra["requests_after_sigterm"] > 0 and drain.refused == 0
    assert by_name["reload-under-load"].extra["answers_by_version"].get("2", 0) > 0


def test_report_renders(suite: dict, tmp_path: Path) -> None:
    document = to_document(suite, "python -m loadtest.abuse --short")
    assert [target["target"] for target in document["targets"]] == [
        target["target"] for target in check_targets(suite, SHORT)
    ]
    markdown = to_markdown(document)
    assert "| target | wanted | measured | met |" in markdown and "sigterm-drain" in markdown
