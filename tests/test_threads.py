"""The thread policy (`compressa_hf.threads`) and what it reads of the machine (`compressa_hf.resources`)."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from compressa_hf import resources, threads
from compressa_hf.threads import choose_threads, thread_budget


@pytest.mark.parametrize(
    ("cores", "processes", "workers", "busy", "expected"),
    [
        (2, 1, 0, 0, 2),  # an idle 2-core machine: both cores
        (2, 1, 0, 1, 1),  # one other job running: the case, where 2 threads ran 10-40x slower than 1
        (2, 1, 0, 3, 1),  # never below one
        (2, 1, 1, 0, 1),  # a decode worker takes a core
        (16, 4, 0, 0, 4),  # accelerate launch --num_processes 4 on 16 cores
        (16, 4, 1, 4, 2),  # ... each with a worker, 4 other tasks spread over the 4 processes
        (1.5, 1, 0, 0, 1),  # a fractional cgroup quota rounds down
        (8, 1, 0, None, 8),  # no run-queue reading: cores only
    ],
)
def test_thread_budget(cores, processes, workers, busy, expected):
    assert thread_budget(cores, processes, workers, busy) == expected


def test_user_settings_win_and_are_named():
    # COMPRESSA_NUM_THREADS wins over everything, OMP_NUM_THREADS set by the user is kept as given.
    assert choose_threads(env={"COMPRESSA_NUM_THREADS": "3", "OMP_NUM_THREADS": "1"}, cores=2).threads == 3
    omp = choose_threads(env={"OMP_NUM_THREADS": "4"}, cores=2, running=5)
    assert (omp.threads, omp.decided_by) == (4, "OMP_NUM_THREADS")
    assert "set by OMP_NUM_THREADS" in omp.describe()
    # torch.set_num_threads(3) before the entry point: torch's count differs from its default
    pinned = choose_threads(env={}, current=3, torch_default=2, cores=2, running=1)
    assert (pinned.threads, pinned.decided_by) == (3, "torch.set_num_threads")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='two'"):
        choose_threads(env={"OMP_NUM_THREADS": "two"}, cores=2)


def test_auto_counts_load_processes_and_launcher_share():
    idle = choose_threads(env={}, current=2, torch_default=2, cores=2, running=1, machine_cpus=2)
    assert (idle.threads, idle.decided_by, idle.busy) == (2, "auto", 0)
    loaded = choose_threads(env={}, current=2, torch_default=2, cores=2, running=2, machine_cpus=2)
    assert loaded.threads == 1 and loaded.busy == 1
    assert "1 other busy task" in loaded.describe()
    # Under accelerate launch, OMP_NUM_THREADS is the launcher's share: it caps the count, it does not fix it.
    env = {"ACCELERATE_DYNAMO_BACKEND": "NO", "OMP_NUM_THREADS": "8", "LOCAL_WORLD_SIZE": "2"}
    launched = choose_threads(env=env, cores=16, running=2, machine_cpus=16)  # the reader and its sibling
    assert (launched.threads, launched.processes, launched.launcher_share, launched.busy) == (8, 2, 8, 0)
    busy = choose_threads(env=env, cores=16, running=8, machine_cpus=16)  # 6 other tasks, 3 per process
    assert busy.threads == 5
    # A machine-wide run queue on a machine larger than this process's cores: only its share counts.
    share = choose_threads(env={}, current=1, torch_default=1, cores=2, running=17, machine_cpus=32)
    assert share.busy == pytest.approx(1.0) and share.threads == 1


def test_configure_and_beside_workers_set_torch(monkeypatch, caplog):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv("COMPRESSA_NUM_THREADS", "1")
    try:
        with caplog.at_level(logging.INFO, logger="compressa_hf.threads"):
            choice = threads.configure_threads(what="test")
        assert torch.get_num_threads() == 1 and choice.decided_by == "COMPRESSA_NUM_THREADS"
        assert any("test: torch threads 1 (set by COMPRESSA_NUM_THREADS)" in m for m in caplog.messages)
        with threads.beside_workers(2) as during:  # the user's count stays as it is while workers run
            assert during == 1 == torch.get_num_threads()
        monkeypatch.delenv("COMPRESSA_NUM_THREADS")
        monkeypatch.setattr(resources, "usable_cpus", lambda: 4.0)
        monkeypatch.setattr(resources, "runnable_tasks", lambda: 1.0)
        monkeypatch.setattr(os, "cpu_count", lambda: 4)
        auto = threads.configure_threads(what="test")
        assert (auto.threads, auto.decided_by) == (4, "auto") and torch.get_num_threads() == 4
        with threads.beside_workers(1) as during:
            assert during == 3 == torch.get_num_threads()
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_every_command_configures_threads(monkeypatch, caplog, tmp_path):
    """`compressa <command>` sets the count before its work: here `push`, which fails on a missing folder after."""
    from compressa_hf.cli import main

    before = torch.get_num_threads()
    monkeypatch.setenv("COMPRESSA_NUM_THREADS", "1")
    try:
        with caplog.at_level(logging.INFO, logger="compressa_hf.threads"):
            main(["push", str(tmp_path / "none"), "org/name", "--dry-run"])
    finally:
        torch.set_num_threads(before)
    assert any("compressa push: torch threads 1" in m for m in caplog.messages)


def test_resources_read_cgroup_files(tmp_path, monkeypatch):
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    v2.mkdir()
    v1.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    (v2 / "memory.max").write_text(f"{4 * 10**9}\n")
    (v2 / "memory.current").write_text(f"{3 * 10**9}\n")
    (v2 / "memory.stat").write_text(f"anon 1\ninactive_file {10**9}\n")
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    monkeypatch.setattr(resources, "_cgroup_dirs", lambda controller: [str(v1), str(v2)])
    assert resources.cgroup_cpu_limit() == 1.5
    assert resources.cgroup_memory() == (4 * 10**9, 2 * 10**9)  # usage less the inactive page cache
    monkeypatch.setattr(resources, "affinity_cpus", lambda: 8)
    assert resources.usable_cpus() == 1.5
    free, where = resources.available_memory()
    assert free <= 2 * 10**9 and ("cgroup memory limit 4.00 GB" in where or "available RAM" in where)
    monkeypatch.setattr(resources, "_cgroup_dirs", lambda controller: [])
    assert resources.cgroup_cpu_limit() is None and resources.cgroup_memory() == (None, None)


def test_resources_on_this_machine():
    assert resources.usable_cpus() >= 1 and resources.affinity_cpus() >= 1
    running = resources.runnable_tasks(samples=3, interval_s=0.001)
    assert running is None or running >= 1  # the reader itself runs
    assert resources.available_memory()[0] > 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8GB", 8 * 10**9), ("8 GiB", 8 * 2**30), ("512MiB", 512 * 2**20), ("1e9", 10**9), (1000, 1000), ("2.5k", 2500)],
)
def test_parse_bytes(text, expected):
    assert resources.parse_bytes(text) == expected


def test_parse_bytes_refuses_non_sizes():
    with pytest.raises(ValueError, match="'lots' is not a size"):
        resources.parse_bytes("lots")


def test_a_resumed_run_keeps_the_thread_count_it_ran_with(monkeypatch, caplog, tmp_path):
    """VideoCompressa's checkpoint records the count; a resume under a count this module chose runs with the recorded
    one (the decoder's last bits depend on it), and one the user fixed is kept with a warning."""
    from compressa_hf.distillation.videocompressa import distill
    from tests.test_videocompressa import CLASSES, TinyCodec, make_set, small_config

    class Recording(TinyCodec):
        seen: set = set()

        def _decode(self, z):
            self.seen.add(torch.get_num_threads())
            return super()._decode(z)

    before = torch.get_num_threads()
    monkeypatch.delenv("COMPRESSA_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(resources, "runnable_tasks", lambda: 1.0)
    latents, labels, _ = make_set()
    try:
        monkeypatch.setattr(resources, "usable_cpus", lambda: 1.0)
        threads.configure_threads(what="test")  # auto: 1 thread
        distill(latents, labels, Recording(), small_config(passes=1), CLASSES, False, tmp_path)
        monkeypatch.setattr(resources, "usable_cpus", lambda: 2.0)
        threads.configure_threads(what="test")  # auto: 2 threads now
        Recording.seen = set()
        with caplog.at_level(logging.INFO, logger="compressa_hf.threads"):
            distill(latents, labels, Recording(), small_config(passes=2), CLASSES, False, tmp_path, resume=True)
        assert Recording.seen == {1} and torch.get_num_threads() == 2  # back to the choice after the run
        assert any("while resuming a run that ran with them" in m for m in caplog.messages)

        monkeypatch.setenv("COMPRESSA_NUM_THREADS", "2")  # the user's count wins, with a warning
        threads.configure_threads(what="test")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="compressa_hf.threads"), threads.resumed_with(1) as n:
            assert n == 2 == torch.get_num_threads()
        assert any("set COMPRESSA_NUM_THREADS=1 to resume it exactly" in m for m in caplog.messages)
    finally:
        torch.set_num_threads(before)
