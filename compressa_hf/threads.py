"""How many CPU threads torch uses in each process of `compressa` and of the recipes.

Why not torch's default (one intra-op thread per CPU the process may run on): an OpenMP team waits for its slowest
thread at the end of every parallel operation, so when other processes hold some of the cores, every small operation
waits for a time slice. Measured on 2 cores shared with other jobs: one DM distillation step took 1.2-4.2 s with two
threads and 0.11 s with one, and the whole run 869 s against 94 s, with byte-identical output (BENCHMARKS.md,
"Threads on a shared machine"; `bench/threads.py`). So each process takes

    threads = max(1, floor(cores / processes - workers - busy / processes))

- `cores`: CPUs this process may use (`os.sched_getaffinity`, capped by its cgroup's CPU quota;
  `compressa_hf.resources.usable_cpus`);
- `processes`: the processes of one launch on this machine (`LOCAL_WORLD_SIZE` from `accelerate launch` / torchrun);
- `workers`: DataLoader worker processes this process runs at the same time (decode workers of the cache pass,
  `--loader_workers`, `--dataloader_num_workers`), each of which keeps a core busy;
- `busy`: tasks of other programs running or waiting for a core right now (the kernel's run queue, less this
  process and its sibling processes), spread over the machine's CPUs when it has more than this process may use.

Who decides, first match wins (each logged):
1. `COMPRESSA_NUM_THREADS=N`: N, always (the way to force a count under a launcher).
2. `OMP_NUM_THREADS` or `MKL_NUM_THREADS` set by the user (outside a launcher): kept as given.
3. `torch.set_num_threads(n)` called before the entry point: kept.
4. Under `accelerate launch`, torchrun or the DeepSpeed launcher, which always set `OMP_NUM_THREADS` to a share of the
   cores that ignores other programs: that share caps the computed count.
5. Otherwise the computed count.
Inter-op threads (torch's pool for `torch.jit.fork` and a few ops) get the same count where torch still allows it
(only before its first parallel work).

The count is chosen when a process starts and again around phases with DataLoader workers (`beside_workers`); a job
that starts on the machine later is not seen. Worker processes themselves run one thread each
(`compressa_hf.cache.clip_loader`).

Reproducibility: some results depend on the count in their last bits (TAEF2's decoder gave outputs 1e-5 apart with 1
and 2 threads; its encoder and DM the same bytes), so a count chosen from the load can differ between two runs of one
command. Runs record it (`compressa distill`'s summary), a resumed VideoCompressa run takes its checkpoint's
(`resumed_with`), and `COMPRESSA_NUM_THREADS=N` fixes it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass

from compressa_hf import resources

logger = logging.getLogger(__name__)

ENV = "COMPRESSA_NUM_THREADS"
USER_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Variables that mean a launcher started this process (and set OMP_NUM_THREADS itself): accelerate's launchers set
#: ACCELERATE_DYNAMO_BACKEND (simple and multi-process) or ACCELERATE_USE_DEEPSPEED; torchrun and DeepSpeed's launcher
#: set LOCAL_RANK.
LAUNCHER_ENVS = ("ACCELERATE_DYNAMO_BACKEND", "ACCELERATE_USE_DEEPSPEED", "LOCAL_RANK")
LOCAL_SIZE_ENVS = ("LOCAL_WORLD_SIZE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE")


@dataclass
class ThreadChoice:
    """What a process runs with and why (logged, and kept in summaries).

    Attributes:
        threads: Intra-op threads (`torch.set_num_threads`).
        decided_by: "COMPRESSA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "torch.set_num_threads" or
            "auto" (the formula, capped by a launcher's share when `launcher_share` is set).
        cores: CPUs this process may use (affinity, cgroup quota).
        processes: Processes of this launch on the machine.
        workers: DataLoader workers counted.
        busy: Other tasks running now, in this process's cores' terms (None where the OS does not say).
        launcher_share: OMP_NUM_THREADS a launcher set, or None.
    """

    threads: int
    decided_by: str
    cores: float
    processes: int
    workers: int
    busy: float | None
    launcher_share: int | None = None

    def describe(self) -> str:
        if self.decided_by != "auto":
            return f"{self.threads} (set by {self.decided_by})"
        busy = "unknown" if self.busy is None else f"{self.busy:g}"
        text = (
            f"{self.threads} ({self.cores:g} usable cores, {self.processes} process(es) of this launch, "
            f"{self.workers} DataLoader worker(s), {busy} other busy task(s)"
        )
        if self.launcher_share is not None:
            text += f", launcher's share OMP_NUM_THREADS={self.launcher_share}"
        return text + f"; {ENV}=N overrides)"

    def to_dict(self) -> dict:
        return asdict(self)


def thread_budget(cores: float, processes: int = 1, workers: int = 0, busy: float | None = 0.0) -> int:
    """`max(1, floor(cores / processes - workers - busy / processes))`: the intra-op threads one process can keep busy
    without waiting on cores that other processes hold (see the module docstring)."""
    if processes < 1 or workers < 0 or cores <= 0:
        raise ValueError(f"need cores > 0, processes >= 1, workers >= 0; got {cores}, {processes}, {workers}")
    free = cores / processes - workers - (busy or 0.0) / processes
    return max(1, math.floor(free + 1e-9))


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(
            f"{name}={value!r} is not a whole number of threads; unset it or give e.g. {name}=1"
        ) from None
    if n < 1:
        raise ValueError(f"{name}={value!r}: the number of threads must be >= 1")
    return n


def local_processes(env: Mapping[str, str] | None = None) -> int:
    """Processes of this launch on this machine (1 when not launched)."""
    env = os.environ if env is None else env
    for name in LOCAL_SIZE_ENVS:
        n = _positive_int(env, name)
        if n is not None:
            return n
    return 1


def choose_threads(
    workers: int = 0,
    env: Mapping[str, str] | None = None,
    current: int | None = None,
    torch_default: int | None = None,
    cores: float | None = None,
    running: float | None = None,
    machine_cpus: int | None = None,
) -> ThreadChoice:
    """The thread count for this process (see the module docstring for the rules). The keyword arguments after
    `workers` replace what is read from the machine (for tests): `current` is torch's thread count now, `torch_default`
    what torch starts with, `running` the run queue (`resources.runnable_tasks`)."""
    env = os.environ if env is None else env
    cores = resources.usable_cpus() if cores is None else cores
    processes = local_processes(env)
    machine_cpus = machine_cpus or os.cpu_count() or 1

    def fixed(n: int, by: str) -> ThreadChoice:
        return ThreadChoice(n, by, cores, processes, workers, None)

    forced = _positive_int(env, ENV)
    if forced is not None:
        return fixed(forced, ENV)
    launched = any(name in env for name in LAUNCHER_ENVS)
    share = None
    for name in USER_ENVS:
        n = _positive_int(env, name)
        if n is not None:
            if not launched:
                return fixed(n, name)
            share = n
            break
    if current is not None and torch_default is not None and current != torch_default and current != _applied:
        return fixed(current, "torch.set_num_threads")
    if running is None:
        running = resources.runnable_tasks()
    busy = None
    if running is not None:
        # The reader itself is one running task, and a launch's sibling processes are starting up beside it.
        busy = max(0.0, running - 1 - (processes - 1))
        if machine_cpus > cores:  # a machine-wide count, of which this process's cores see their share
            busy *= cores / machine_cpus
    threads = thread_budget(cores, processes, workers, busy)
    if share is not None:
        threads = min(threads, share)
    return ThreadChoice(threads, "auto", cores, processes, workers, busy, share)


#: The count this module last set in this process (so a later call can tell it from the user's own choice).
_applied: int | None = None
_last: ThreadChoice | None = None


def _torch_default() -> int:
    """What torch starts with here: OMP_NUM_THREADS / MKL_NUM_THREADS when set, else one per CPU of the affinity
    (GNU OpenMP's rule, which torch's OpenMP backend follows)."""
    for name in USER_ENVS:
        n = _positive_int(os.environ, name)
        if n is not None:
            return n
    return resources.affinity_cpus()


def configure_threads(workers: int = 0, what: str = "compressa") -> ThreadChoice:
    """Choose this process's torch thread count (`choose_threads`), apply it and log it; returns the choice.

    Called by every `compressa` command and recipe at start. Inter-op threads follow where torch still allows it.
    """
    global _applied, _last
    import torch

    choice = choose_threads(workers, current=torch.get_num_threads(), torch_default=_torch_default())
    if choice.threads != torch.get_num_threads():
        torch.set_num_threads(choice.threads)
    if _applied is None:  # the first call only: torch refuses a second setting, or one after parallel work began
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(choice.threads)
    _applied, _last = choice.threads, choice
    logger.info("%s: torch threads %s", what, choice.describe())
    return choice


def last_choice() -> ThreadChoice | None:
    """The choice `configure_threads` made last in this process (for run summaries), or None."""
    return _last


@contextlib.contextmanager
def beside_workers(workers: int) -> Iterator[int]:
    """Within the block, this process leaves one core per DataLoader worker (`workers` of them) to the workers; the
    count comes back after it. Nothing changes when the user fixed the count, or no worker runs. Yields the count."""
    import torch

    before = torch.get_num_threads()
    choice = _last
    if workers <= 0 or choice is None or choice.decided_by != "auto" or before != _applied:
        yield before
        return
    during = thread_budget(choice.cores, choice.processes, choice.workers + workers, choice.busy)
    if choice.launcher_share is not None:
        during = min(during, choice.launcher_share)
    if during != before:
        logger.info("torch threads %d while %d DataLoader worker(s) decode (was %d)", during, workers, before)
        torch.set_num_threads(during)
    try:
        yield during
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def resumed_with(threads: int | None) -> Iterator[int]:
    """Within the block, run with the thread count an interrupted run used (`threads`, from its checkpoint), so the
    resumed run does the same operations in the same order: some results depend on the count in their last bits (a
    decoder's convolutions), and a resume promises the bytes of an uninterrupted run. Only a count this module chose
    is replaced; one the user fixed stays, with a warning when it differs. Yields the count in force."""
    import torch

    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield before
        return
    if _last is None or _last.decided_by != "auto" or before != _applied:
        logger.warning(
            "resuming a run made with %d torch threads under %d set by %s: its remaining steps may differ from an "
            "uninterrupted run's in the last bits; set %s=%d to resume it exactly",
            threads,
            before,
            _last.decided_by if _last is not None else "the caller",
            ENV,
            threads,
        )
        yield before
        return
    logger.info("torch threads %d while resuming a run that ran with them (was %d)", threads, before)
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
