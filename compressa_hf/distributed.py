"""Process-group setup shared by the commands that run under `accelerate launch`."""

from __future__ import annotations


def get_state():
    """`accelerate.PartialState` that also forms a gloo group when several processes run on a machine without GPU.

    Why: accelerate 1.x's `launch --cpu` uses its simple launcher and starts a single process, and a CPU-only run
    started with `--multi_gpu --num_processes N` only joins a process group when the state is told `cpu=True`.
    So `accelerate launch --multi_gpu --num_processes 2 ...` on a CPU machine gives two gloo ranks here.
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
