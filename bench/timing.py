"""What the benchmarks that time a call in this process share."""
from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int) -> float:
    """Median wall seconds of `fn()` over `repeats` timed calls after one warm-up call (one slow call moves nothing)."""
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)
