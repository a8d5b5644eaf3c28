"""``python -m loadtest.service_bench``: HTTP throughput against a raw onnxruntime session, and tail latency.

See ``loadtest.service_bench.run`` for the method and ``docs/benchmarks/service.md`` for results.
"""
