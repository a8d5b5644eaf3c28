"""HTTP comparison: the service with ``dlrm-full`` and ``dlrm-robe``, saturated by locust, read from /metrics.

    python -m loadtest.compare [--repository build/engine/kaggle/repository] [--users 16] [--seconds 20]

The default repository holds the engine benchmark's kaggle-shape models (``python -m loadtest.engine``
links them there), loaded with ids of their vocabulary (``--source kaggle``); ``--repository models
--source criteo`` serves the demo models real Criteo rows instead.

Starts ``python -m service`` on a free loopback port with a repository holding only the two models,
then runs locust headless (``loadtest/locustfile.py``, ``CtrUser``) for the same time at the same user
count against each model in turn, alternating (A B B A ...). Throughput is read from the service's own
``robeserve_inferences_total`` over the steady part of each run; latency percentiles and failures from
locust's CSVs (kept in ``--csv-dir``). For the batch sizes the dynamic batcher actually formed, the same two
model files are timed in-process with onnxruntime, so the HTTP ratio can be checked against the engine
ratio. Writes ``http.json`` (DESIGN.md section 8), ``http.md`` and ``http.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from loadtest import http_report
from loadtest.payloads import Source, ctr_records, ctr_tensors
from loadtest.sessions import BenchmarkError, make_session
from loadtest.timing import TimingConfig, alternate, wall_clock

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass(frozen=True)
class CompareConfig:
    """One comparison.

    Args:
        repository: model repository holding both models.
        models: (baseline, compressed) model names.
        users: concurrent locust users (each sends back to back).
        seconds: length of each locust run.
        warmup_s: the first seconds of each run are left out of the /metrics throughput.
        rounds: runs per model, alternating.
        instances: CTR records per request.
        source: ``kaggle`` (ids the kaggle-shape models know), ``criteo`` (real rows) or ``synthetic``.
        max_batch_size: the service's dynamic batching limit (samples per merged run).
        max_queue_delay_us: how long the batcher waits for a batch to fill.
        threads: onnxruntime intra-op threads in the service (and in the engine check).
        csv_dir: where locust's CSVs and the service log go.
        ready_timeout_s: longest wait for the service to report ready.
    """

    repository: Path = Path("build/engine/kaggle/repository")
    models: tuple[str, str] = ("dlrm-full", "dlrm-robe")
    users: int = 16
    seconds: float = 20.0
    warmup_s: float = 4.0
    rounds: int = 2
    instances: int = 32
    source: Source = Source.KAGGLE
    max_batch_size: int = 256
    max_queue_delay_us: int = 2000
    threads: int = 1
    csv_dir: Path = field(default=Path("build/http"))
    ready_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if len(self.models) != 2 or self.models[0] == self.models[1]:
            raise ValueError(f"compare two different models, got {self.models}")
        if self.users < 1 or self.rounds < 1 or self.instances < 1 or self.threads < 1:
            raise ValueError("users, rounds, instances and threads must be >= 1")
        if not self.seconds > self.warmup_s + 1:
            raise ValueError(f"--seconds must exceed the {self.warmup_s:g} s warm-up by more than 1 s")


def latest_version(repository: Path, name: str) -> Path:
    """repository/name/<highest version> holding model.onnx, or BenchmarkError naming the fix."""
    versions = [d for d in (repository / name).glob("*") if (d / "model.onnx").is_file()]
    if not versions:
        raise BenchmarkError(f"model {name!r} not found in {repository}: run python -m loadtest.engine "
                             "--shape kaggle (or give --repository models after make demo-models)")
    return max(versions, key=lambda d: (d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """``python -m service`` in a subprocess on a loopback port, over a repository of symlinks."""

    def __init__(self, config: CompareConfig) -> None:
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = Path(tempfile.mkdtemp(prefix="robeserve-compare-"))
        for name in config.models:
            (self.root / name).symlink_to(latest_version(config.repository, name).parent.resolve())
        self.log_path = config.csv_dir / "service.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0

    def start(self) -> None:
        c = self.config
        command = [
            sys.executable, "-m", "service", "--repository", str(self.root), "--host", "127.0.0.1",
            "--port", str(self.port), "--intra-op-threads", str(c.threads),
            "--max-batch-size", str(c.max_batch_size), "--max-queue-delay-us", str(c.max_queue_delay_us),
            "--poll-interval-s", "0", "--log-level", "WARNING",
        ]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        while time.monotonic() - started < c.ready_timeout_s:
            if self.process.poll() is not None:
                raise BenchmarkError(
                    f"the service exited with {self.process.returncode}; see {self.log_path}"
                )
            if _status(f"{self.url}/v2/health/ready") == 200:
                self.ready_s = time.monotonic() - started
                return
            time.sleep(0.2)
        raise BenchmarkError(
            f"the service was not ready after {c.ready_timeout_s:.0f} s; see {self.log_path}"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for link in self.root.iterdir():
            link.unlink()
        self.root.rmdir()

    def metrics(self) -> dict[str, dict[str, float]]:
        """Per model: inferences, batch-size sum and count (counters summed over versions)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        wanted = {
            "robeserve_inferences_total": "samples",
            "robeserve_batch_size_sum": "batch_sum",
            "robeserve_batch_size_count": "batches",
        }
        totals: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in wanted:
                    model = totals.setdefault(
                        sample.labels.get("model", ""), dict.fromkeys(wanted.values(), 0.0)
                    )
                    model[wanted[sample.name]] += sample.value
        return totals


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError as exc:  # refused while starting; HTTPError carries the 503
        return int(getattr(exc, "code", 0) or 0)


def locust_stats(prefix: Path) -> dict[str, float]:
    """The Aggregated row of locust's ``PREFIX_stats.csv``."""
    with (prefix.parent / f"{prefix.name}_stats.csv").open(newline="") as stream:
        row = next(r for r in csv.DictReader(stream) if r["Name"] == "Aggregated")
    return {
        "requests": float(row["Request Count"]),
        "failures": float(row["Failure Count"]),
        "p50_ms": float(row["50%"]),
        "p99_ms": float(row["99%"]),
        "requests_per_s": float(row["Requests/s"]),
    }


def locust_command(url: str, config: CompareConfig, prefix: Path) -> list[str]:
    """Headless locust, ``CtrUser`` only, every user spawned at once, CSVs at ``prefix``."""
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(config.users),
        "-r", str(config.users), "-t", f"{config.seconds:g}s", "-H", url, "--csv", str(prefix),
        "--only-summary", "--stop-timeout", "10", "--loglevel", "WARNING", "CtrUser",
    ]  # fmt: skip


def run_model(service: Service, model: str, config: CompareConfig, tag: str) -> dict[str, Any]:
    """One locust run against ``model``; throughput from /metrics over its steady part."""
    prefix = config.csv_dir / f"{model}-{tag}"
    env = {**os.environ, "LOADTEST_MODEL": model, "LOADTEST_INSTANCES": str(config.instances),
           "LOADTEST_SOURCE": config.source.value}  # fmt: skip
    with (config.csv_dir / f"{model}-{tag}.log").open("wb") as log:
        locust = subprocess.Popen(locust_command(service.url, config, prefix), env=env, stdout=log,
                                  stderr=subprocess.STDOUT)  # fmt: skip
        time.sleep(config.warmup_s)
        first, first_t = service.metrics(), time.monotonic()
        time.sleep(max(0.5, config.seconds - config.warmup_s - 1))
        last, last_t = service.metrics(), time.monotonic()
        locust.wait(timeout=config.seconds + 60)
    zero = {"samples": 0.0, "batch_sum": 0.0, "batches": 0.0}
    delta = {k: last.get(model, zero)[k] - first.get(model, zero)[k] for k in zero}
    window = last_t - first_t
    return {"model": model, "run": tag, "window_s": window, "samples": delta["samples"],
            "samples_per_s": delta["samples"] / window,
            "mean_batch": delta["batch_sum"] / delta["batches"] if delta["batches"] else 0.0,
            **locust_stats(prefix)}  # fmt: skip


def engine_ratio(config: CompareConfig, batch: int) -> dict[str, Any]:
    """The two model files timed in-process at ``batch`` (alternating medians): the engine's ratio."""
    records = ctr_records(config.source, max(batch, 64))
    feeds = ctr_tensors(records[:batch])
    baseline, compressed = config.models
    samples = {}
    for name in config.models:
        session = make_session(latest_version(config.repository, name) / "model.onnx", "cpu", config.threads)
        samples[name] = wall_clock(functools.partial(session.run, None, feeds), repeats=max(1, 2048 // batch))
    timings = alternate(samples, TimingConfig(warmup=2, rounds=9))
    return {
        "batch": batch,
        "ratio": timings[baseline].median_s / timings[compressed].median_s,
        **{f"{name}_samples_per_s": batch / timings[name].median_s for name in config.models},
    }


def summarize(runs: list[dict[str, Any]], config: CompareConfig) -> dict[str, Any]:
    """Per model: samples/s over all its windows, the median p50 and the worst p99 of its runs."""
    models = {}
    for name in config.models:
        mine = [r for r in runs if r["model"] == name]
        window = sum(r["window_s"] for r in mine)
        models[name] = {
            "samples_per_s": sum(r["samples"] for r in mine) / window if window else 0.0,
            "p50_ms": sorted(r["p50_ms"] for r in mine)[len(mine) // 2],
            "p99_ms": max(r["p99_ms"] for r in mine),
            "requests": int(sum(r["requests"] for r in mine)),
            "failures": int(sum(r["failures"] for r in mine)),
            "mean_batch": sum(r["mean_batch"] for r in mine) / len(mine),
        }  # fmt: skip
    baseline, compressed = config.models
    full_rate = models[baseline]["samples_per_s"]
    return {
        "failures": sum(m["failures"] for m in models.values()),
        "ratio_robe_vs_full": models[compressed]["samples_per_s"] / full_rate if full_rate else 0.0,
        "models": models,
    }


def run(config: CompareConfig, out_dir: Path | None, command: str) -> dict[str, Any]:
    """Start the service, load each model in alternating rounds, check against the engine; write pages."""
    config.csv_dir.mkdir(parents=True, exist_ok=True)
    service = Service(config)
    runs: list[dict[str, Any]] = []
    try:
        service.start()
        for round_index in range(config.rounds):
            order = config.models if round_index % 2 == 0 else config.models[::-1]
            for model in order:
                runs.append(run_model(service, model, config, f"r{round_index + 1}"))
    finally:
        service.stop()
    result = summarize(runs, config)
    formed = round(sum(m["mean_batch"] for m in result["models"].values()) / len(config.models))
    check = engine_ratio(config, max(1, formed))
    result.update({
        "engine_at_formed_batch": {**check,
                                   "http_over_engine": result["ratio_robe_vs_full"] / check["ratio"]},
        "service_ready_s": service.ready_s, "runs": runs, "command": command,
        "config": {k: str(v) if isinstance(v, Path | Source) else v for k, v in vars(config).items()},
        "conditions": http_report.conditions(),
    })  # fmt: skip
    if out_dir is not None:
        http_report.publish(result, out_dir)
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = CompareConfig()
    parser = argparse.ArgumentParser(prog="python -m loadtest.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=defaults.repository)
    parser.add_argument("--models", default=",".join(defaults.models), help="baseline,compressed")
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="length of each locust run")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="runs per model, alternating")
    parser.add_argument("--instances", type=int, default=defaults.instances, help="records per request")
    parser.add_argument("--source", choices=[s.value for s in Source], default=defaults.source.value)
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size)
    parser.add_argument("--max-queue-delay-us", type=int, default=defaults.max_queue_delay_us)
    parser.add_argument(
        "--threads", type=int, default=defaults.threads, help="onnxruntime threads per session"
    )
    parser.add_argument("--csv-dir", type=Path, default=defaults.csv_dir)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        names = args.models.split(",")
        if len(names) != 2:
            raise ValueError(f"--models takes two names (baseline,compressed), got {args.models!r}")
        config = CompareConfig(
            args.repository, (names[0], names[1]), args.users, args.seconds, rounds=args.rounds,
            instances=args.instances, source=Source(args.source), max_batch_size=args.max_batch_size,
            max_queue_delay_us=args.max_queue_delay_us, threads=args.threads, csv_dir=args.csv_dir,
        )  # fmt: skip
        command = shlex.join(["python", "-m", "loadtest.compare", *(sys.argv[1:] if argv is None else argv)])
        result = run(config, args.out, command)
    except (ValueError, OSError, BenchmarkError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    print(http_report.summary(result))  # noqa: T201 - the CLI's output
    return 0 if result["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
