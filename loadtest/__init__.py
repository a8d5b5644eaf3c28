"""Load tests, engine and GPU benchmarks: measure what ROBE compression buys at serving time."""
