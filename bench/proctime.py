"""Timing shared by the benchmarks: wall time of a call, CPU time of a process tree (driver,
Spark JVM, Python workers)."""
from __future__ import annotations

import os
import time


def timed(fn):
    """``(fn(), wall seconds)``."""
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def tree_cpu_seconds(root: int | None = None) -> dict[str, float]:
    """CPU seconds (user + system, reaped children included) of process ``root`` and all its
    descendants — the driver, the Spark JVM and its Python workers (Linux /proc) — by role:
    ``jvm``, ``python workers`` and ``driver`` (everything else)."""
    root = os.getpid() if root is None else root
    ticks, children, roles = {}, {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                command = fh.read().decode(errors="replace")
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        ticks[pid] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        roles[pid] = ("jvm" if "java" in command else
                      "python workers" if "pyspark.daemon" in command or "pyspark.worker" in command else "driver")
        children.setdefault(ppid, []).append(pid)
    totals, todo = {"driver": 0.0, "jvm": 0.0, "python workers": 0.0}, [root]
    while todo:
        pid = todo.pop()
        if pid in ticks:
            totals[roles[pid]] += ticks[pid] / os.sysconf("SC_CLK_TCK")
        todo.extend(children.get(pid, []))
    return totals
