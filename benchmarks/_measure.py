"""Wall time and peak resident memory of a block of code, for the benchmark tables.

Peak memory is sampled from the process RSS (so torch and numpy buffers count, which
tracemalloc would miss) by a background thread every few milliseconds; it is the peak
during the block, including memory that was already held when the block started.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import psutil


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_mb: float = 0.0


@contextmanager
def measure(interval: float = 0.005):
    """``with measure() as m: ...`` then read ``m.seconds`` and ``m.peak_mb``."""
    proc = psutil.Process()
    result = Measurement(peak_mb=proc.memory_info().rss / 2**20)
    done = threading.Event()

    def sample():
        while not done.is_set():
            result.peak_mb = max(result.peak_mb, proc.memory_info().rss / 2**20)
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        done.set()
        thread.join()
        result.peak_mb = max(result.peak_mb, proc.memory_info().rss / 2**20)
