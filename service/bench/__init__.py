"""``python -m service.bench``: HTTP throughput against a raw onnxruntime session, and tail latency.

See ``service.bench.run`` for the method and ``docs/benchmarks/service.md`` for results.
"""
