"""Wall time and peak resident memory of a block of code, for the benchmark tables.

Peak memory is sampled from the process RSS (so torch and numpy buffers count, which
tracemalloc would miss) by a background thread every few milliseconds; it is the peak
during the block, including memory that was already held when the block started.
"""

from __future__ import annotations

import os
import re
import subprocess
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


def run_watched(
    command: list[str], log: os.PathLike, *, env: dict | None = None, cwd: os.PathLike | None = None
) -> tuple[int, float, dict]:
    """Run a Snakemake ``command`` with its output in ``log``: (return code, wall seconds,
    ``{rule: (peak MB, CPU s)}`` of its jobs, see :func:`watch_jobs`)."""
    peaks: dict[str, tuple[float, float]] = {}
    stop = threading.Event()
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        watcher = threading.Thread(target=watch_jobs, args=(proc.pid, peaks, stop), daemon=True)
        watcher.start()
        returncode = proc.wait()
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    return returncode, seconds, peaks


_SCRIPT = re.compile(r"\.snakemake/scripts/tmp[^/ ]*?\.(\w+)\.py")


def watch_jobs(pid: int, peaks: dict, stop: threading.Event, interval: float = 0.25) -> None:
    """Peak RSS and CPU seconds per rule, read from each job's script process.

    Snakemake's benchmark files sample every 30 s after a job's first 15 s, so their max_rss
    can miss peaks and their cpu_time misses up to the last 30 s. Here the kernel's RSS
    high-water mark (VmHWM) and the process CPU time (all threads) are read every
    ``interval`` until the process ends. A job is recognised by the script Snakemake runs
    (``.snakemake/scripts/tmpXXX.<rule>.py``); ``peaks[rule] = (peak MB, CPU s)``.
    """
    import psutil

    root = psutil.Process(pid)
    rules: dict[int, str] = {}
    while not stop.is_set():
        try:
            children = root.children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            try:
                if child.pid not in rules:
                    match = _SCRIPT.search(" ".join(child.cmdline()))
                    rules[child.pid] = match.group(1) if match else ""
                if not rules[child.pid]:
                    continue
                with open(f"/proc/{child.pid}/status") as fh:
                    hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
                cpu = child.cpu_times()
                rule = rules[child.pid]
                mb, seconds = peaks.get(rule, (0.0, 0.0))
                peaks[rule] = (max(mb, hwm / 1024), max(seconds, cpu.user + cpu.system))
            except (psutil.Error, OSError, StopIteration):
                continue
        stop.wait(interval)
