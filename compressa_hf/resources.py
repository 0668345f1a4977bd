"""What this process may use of the machine: CPU cores, memory, and how busy the cores are right now.

Read by the thread policy (`compressa_hf.threads`) and by VideoCompressa's choice of where its state lives
(`state_storage="auto"`, `compressa_hf.distillation.videocompressa`). Linux first (cgroups v1 and v2, `/proc`), with
portable fallbacks (`os.cpu_count`, psutil, which accelerate already requires).

Why hand-written: psutil reports the host (all CPUs, all RAM), not the share a container or job scheduler gives this
process. A cgroup's CPU quota (`cpu.max`, `cpu.cfs_quota_us`) and memory limit (`memory.max`,
`memory.limit_in_bytes`) are what Docker, Kubernetes and Slurm set; `os.sched_getaffinity` is what `taskset` and
cpusets set. No library in the project's dependencies reads both.
"""

from __future__ import annotations

import math
import os
import re
import time

#: cgroup v1 writes a huge number (PAGE_COUNTER_MAX) for "no limit"; anything above this is no limit.
_NO_LIMIT = 1 << 60

UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bytes(text: str | int | float) -> int:
    """`8GB`, `8 GiB`, `512MiB`, `1e9` or `1000000` -> bytes (decimal units as the Hub and `du -h --si` count them,
    binary ones with an `i`). Raises `ValueError` naming the text."""
    if isinstance(text, int | float):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?[iI]?)[bB]?\s*", str(text))
        if not match:
            raise ValueError(f"{text!r} is not a size: give bytes (1000000) or a number with a unit (512MB, 8GiB)")
        value, unit = float(match.group(1)), match.group(2).lower()
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"{text!r} is not a size: it must be a finite number of bytes >= 0")
    return int(value * UNITS[unit])


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cgroup_dirs(controller: str) -> list[str]:
    """Folders holding `controller`'s files for this process, from its own cgroup up to the root (a limit set on an
    ancestor binds too). v2 (one unified tree) and v1 (one tree per controller) layouts; inside a container the
    process's path is often `/`, and the files sit at the mount point itself."""
    text = _read("/proc/self/cgroup") or ""
    v1, v2 = None, None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        elif controller in parts[1].split(","):
            v1 = (parts[1], parts[2])
    mounts: list[tuple[str, str]] = []
    if v1 is not None:
        names, path = v1
        for name in (names, controller, names.replace(",", "+")):
            mounts.append((os.path.join("/sys/fs/cgroup", name), path))
    if v2 is not None:
        mounts += [("/sys/fs/cgroup", v2), ("/sys/fs/cgroup/unified", v2)]
    dirs: list[str] = []
    for mount, path in mounts:
        if not os.path.isdir(mount):
            continue
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts), -1, -1):
            d = os.path.join(mount, *parts[:depth])
            if os.path.isdir(d) and d not in dirs:
                dirs.append(d)
    return dirs


def cgroup_cpu_limit() -> float | None:
    """CPUs the cgroup quota allows (quota / period, e.g. 1.5), the smallest along the hierarchy; None when no quota."""
    limits = []
    for d in _cgroup_dirs("cpu"):
        v2 = _read(os.path.join(d, "cpu.max"))
        if v2:
            quota, _, period = v2.partition(" ")
            if quota != "max" and period:
                limits.append(int(quota) / int(period))
            continue
        quota, period = _read(os.path.join(d, "cpu.cfs_quota_us")), _read(os.path.join(d, "cpu.cfs_period_us"))
        if quota and period and int(quota) > 0:
            limits.append(int(quota) / int(period))
    return min(limits) if limits else None


def affinity_cpus() -> int:
    """CPUs this process may run on (`taskset`, cpusets); all of them where the OS cannot say."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def usable_cpus() -> float:
    """CPUs this process may use: its affinity, capped by its cgroup's CPU quota (which may be fractional)."""
    cpus = float(affinity_cpus())
    quota = cgroup_cpu_limit()
    return min(cpus, quota) if quota is not None else cpus


def runnable_tasks(samples: int = 5, interval_s: float = 0.01) -> float | None:
    """Tasks the kernel has running or ready to run on the whole machine now, median of a few readings of
    `/proc/stat`'s `procs_running` (the reader counts itself), or None where there is no such file.

    Why this and not the load average: the 1-minute load lags (a job started 5 s ago shows as ~0.1) and still counts
    jobs that ended a minute ago; the run queue says what competes for the cores at this moment. The median of a few
    readings drops one-off blips (a shell command)."""
    readings = []
    for i in range(samples):
        text = _read("/proc/stat")
        if text is None:
            return None
        match = re.search(r"^procs_running\s+(\d+)", text, re.M)
        if match is None:
            return None
        readings.append(int(match.group(1)))
        if i + 1 < samples:
            time.sleep(interval_s)
    readings.sort()
    return float(readings[len(readings) // 2])


def cgroup_memory() -> tuple[int | None, int | None]:
    """(limit, bytes in use that cannot be reclaimed) of this process's memory cgroup, the tightest along the
    hierarchy; (None, None) when there is no limit. In use is the usage less the inactive page cache, as `docker stats`
    counts it (the kernel drops that cache before it kills a process)."""
    best: tuple[int, int] | None = None
    for d in _cgroup_dirs("memory"):
        limit = _read(os.path.join(d, "memory.max"))
        usage = _read(os.path.join(d, "memory.current"))
        inactive_key = "inactive_file"
        if limit is None:
            limit = _read(os.path.join(d, "memory.limit_in_bytes"))
            usage = _read(os.path.join(d, "memory.usage_in_bytes"))
            inactive_key = "total_inactive_file"
        if not limit or limit == "max" or int(limit) >= _NO_LIMIT:
            continue
        stat = _read(os.path.join(d, "memory.stat")) or ""
        match = re.search(rf"^{inactive_key}\s+(\d+)", stat, re.M)
        used = max(0, int(usage or 0) - (int(match.group(1)) if match else 0))
        if best is None or int(limit) - used < best[0] - best[1]:
            best = (int(limit), used)
    return best if best is not None else (None, None)


def available_memory() -> tuple[int, str]:
    """(bytes this process may still take, where that number comes from): the machine's available RAM
    (`MemAvailable`, via psutil), or what is left under the cgroup's memory limit when that is less."""
    import psutil

    host = int(psutil.virtual_memory().available)
    limit, used = cgroup_memory()
    if limit is not None and limit - used < host:
        return max(0, limit - used), f"cgroup memory limit {limit / 1e9:.2f} GB, {used / 1e9:.2f} GB in use"
    return host, f"available RAM {host / 1e9:.2f} GB"
