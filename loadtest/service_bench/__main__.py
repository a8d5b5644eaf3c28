"""``python -m loadtest.service_bench [--clients 64] [--samples-per-request 128] [--seconds 10]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loadtest.service_bench.run import BenchConfig, Encoding, run_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.service_bench", description=__doc__)
    defaults = BenchConfig()
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--samples-per-request", type=int, default=defaults.samples_per_request)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--warmup-s", type=float, default=defaults.warmup_s)
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size)
    parser.add_argument("--max-queue-delay-us", type=int, default=defaults.max_queue_delay_us)
    parser.add_argument("--intra-op-threads", type=int, default=defaults.intra_op_threads)
    parser.add_argument("--encoding", choices=[item.value for item in Encoding], default=defaults.encoding)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        config = BenchConfig(**{key: value for key, value in vars(args).items() if key != "out"})
        result = run_bench(config)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    half = result["half_saturation"]
    print(
        f"HTTP {result['http_samples_per_s']:.0f} samples/s vs raw {result['raw_samples_per_s']:.0f} "
        f"at batch {result['raw_batch_size']}: {100 * result['http_vs_raw']:.0f}% (medians); "
        f"half saturation p50 {half['p50_ms']:.1f} ms, p99 {half['p99_ms']:.1f} ms "
        f"({half['p99_over_p50']:.2f}x)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
