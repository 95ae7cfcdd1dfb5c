"""``make bench``: timed benchmarks that write ``benchmarks/RESULTS.md`` (not tests).

Each ``benchmarks/bench_<name>.py`` module exposes ``run() -> dict``; ``benchmarks.run`` finds,
runs and reports them. See :mod:`benchmarks.run` for the result format.
"""
