"""Teacher soft labels for any method's compressed set, with their bytes counted in the budget.

Why: Video-DC (Chen et al., "A Large-Scale Study on Video Action Dataset Condensation", arXiv 2412.21197, code
MCG-NJU/Video-DC) finds that the labelling method greatly influences video condensation results, and image
distillation's strongest methods (SRe2L; RDED, Sun et al., "On the Diversity and Realism of Distilled Dataset",
CVPR 2024) train the student on a teacher's soft predictions rather than on one-hot labels. Here soft labels are
an option for every method of the registry, evaluated as separate rows (`<method>+soft`) so that the hard-label
rows stay comparable with the paper, and - unlike hard labels, which no method counts - paid for out of the same
budget as the frames.

What (the recipe is the papers'; the budget accounting, the quantisation and the choices below are ours):
1. Teacher: a `compressa_hf.nets` network trained from scratch on the full real training clips (all T frames of
   every clip) with exactly the students' protocol (`compressa_hf.evaluation.train.train_network`, the run's
   `TrainConfig`, handed in by the caller since `evaluate` comes after `distill` in the pipeline), seeded by the
   run's seed - so the teacher of a seed is the network of the full-data reference
   cell of that architecture and seed. One teacher per seed (per fold and seed under `compressa evaluate --folds`,
   so it never sees a held-out clip), cached by `teacher_for` (atomic, resumable).
2. Labels: for each row of a `CompressedSet`, the teacher's class probabilities `softmax(logits / temperature)` on
   the frames the student will train on (`cset.frames(codec)`: the stored latents decoded, K frames per row). One
   probability vector per stored row, computed once - not per crop or augmentation as in SRe2L / RDED's relabelling
   (the protocol has no augmentation but flips). The temperature applies to the teacher only; the student's loss
   is the cross-entropy of its own (untempered) logits to these targets (`evaluate.train`).
3. Storage (`DTYPES`), `stored["soft_labels"]` `(M, C)`:
   - `float16` (default): 2 bytes per class. Each probability is rounded to the nearest float16: an absolute error
     of at most 2^-12 (half a float16 step in [0.5, 1); less below), a relative one of at most 2^-11.
   - `uint8`: 1 byte per class, `q = round(255 p)` by largest remainders, so every row's integers sum to exactly
     255: `|q / 255 - p| < 1 / 255` per entry and the rows read back sum to 1. Probabilities below 1/510 may
     become 0 (most of the "dark knowledge" of a confident teacher); the price of half the bytes.
   `dequantise` reads them back as float32 rows renormalised to sum to 1 (for float16 this moves an entry by at
   most ~2^-11 of its value more, so |read back - p| <= 2^-10).
4. Budget: the labels of M rows cost exactly `M * C * itemsize` bytes (`label_bytes`), part of the set's
   `stored_bytes`, so `check_budget` sees them. The frames make room: the method runs with
   `MethodContext.label_bytes_per_video = C * itemsize`, and the planner keeps the hard-label plan's K but fewer
   videos (`compressa_hf.distillation.budget`, rule 5), i.e. frame selection (uniform, pixel_diff, AVS, scorer only),
   VideoCompressa, DM and the whole-clip coresets (random, herding, forgetting, GraNd) all drop videos, never
   frames per video; LVDD counts the label bytes into each recompressed clip's size. On arid6_iid at 48 px (155
   training clips of 6 classes; TAEF2 latents of 32 x 6 x 6 = 1,152 bytes per uint8 frame), where `k1` and `k2`
   are filled exactly by the frames, float16 labels cost 12 bytes per row: `k1` keeps K = 1 for 150 of the 155
   videos (25 per class; uint8 labels: 154), `k2` keeps K = 2 for 154; the whole-clip coresets keep their 3 / 6
   clips per class, whose unused bytes hold the labels. `relabel` refuses with a `ValueError` (an "n/a" cell in
   `compressa evaluate`) a set whose method did not leave the room.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from compressa_hf.distillation.methods.base import CompressedSet, check_budget

logger = logging.getLogger(__name__)

SOFT_SUFFIX = "+soft"
DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "uint8": torch.uint8}
UINT8_SCALE = 255


def soft_name(method: str) -> str:
    """The report row of `method` trained on soft labels: `uniform` -> `uniform+soft`."""
    return method + SOFT_SUFFIX


def base_method(name: str) -> str:
    """The registry method of a row name: `uniform+soft` -> `uniform`, `uniform+soft+aug` -> `uniform`, `uniform` ->
    `uniform` (a row adds its variants to the method's name with `+`, which no method name holds)."""
    return name.split("+", 1)[0]


def is_soft(name: str) -> bool:
    """Whether the row `name` trains on teacher soft labels (`uniform+soft`, `uniform+soft+aug`)."""
    return SOFT_SUFFIX in name


def check_options(dtype: str, temperature: float) -> None:
    """`ValueError` naming the bad value unless `dtype` is in `DTYPES` and `temperature` > 0."""
    if dtype not in DTYPES:
        raise ValueError(f"soft label dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if not temperature > 0:
        raise ValueError(f"soft label temperature must be > 0, got {temperature}")


def label_bytes(num_classes: int, dtype: str = "float16") -> int:
    """Bytes of one row's stored soft labels: `num_classes * itemsize` (12 for 6 classes at float16)."""
    check_options(dtype, 1.0)
    return num_classes * DTYPES[dtype].itemsize


def quantise(probs: torch.Tensor, dtype: str = "float16") -> torch.Tensor:
    """`(M, C)` probabilities -> the stored `(M, C)` tensor of `dtype` (see the module docstring for the errors).

    uint8 uses largest-remainder rounding of `255 * p` (rows renormalised first, in float64), ties to the lower
    class index, so each row sums to exactly 255.
    """
    check_options(dtype, 1.0)
    if probs.dim() != 2 or not probs.is_floating_point():
        raise ValueError(f"probs must be float (M, C), got {probs.dtype} {tuple(probs.shape)}")
    if dtype == "float16":
        return probs.detach().to("cpu", torch.float16)
    p = probs.detach().to("cpu", torch.float64).clamp_min(0)
    x = p / p.sum(dim=1, keepdim=True) * UINT8_SCALE
    q = x.floor()
    deficit = (UINT8_SCALE - q.sum(dim=1)).round().long()  # in [0, C): the units the floors lost
    order = torch.sort(x - q, dim=1, descending=True, stable=True).indices
    bump = (torch.arange(p.shape[1]).expand_as(q) < deficit[:, None]).to(q.dtype)
    return q.scatter_add(1, order, bump).to(torch.uint8)


def dequantise(stored: torch.Tensor) -> torch.Tensor:
    """The stored soft labels `(M, C)` (float16 or uint8) as float32 probabilities whose rows sum to 1."""
    if stored.dtype not in DTYPES.values() or stored.dim() != 2:
        raise ValueError(f"stored soft labels must be float16 or uint8 (M, C), got {stored.dtype} {stored.shape}")
    p = stored.float()
    return p / p.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)


def targets(cset: CompressedSet) -> torch.Tensor | None:
    """The training targets of a set: its soft labels read back `(M, C)` float32, or None for hard labels."""
    stored = cset.stored.get("soft_labels")
    return None if stored is None else dequantise(stored)


@torch.no_grad()
def teacher_probabilities(
    teacher: torch.nn.Module,
    frames: torch.Tensor,
    temperature: float = 1.0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """`softmax(teacher(frames) / temperature)` `(M, C)` float32 on the CPU, for uint8 clips `(M, K, 3, H, W)` (a
    tensor or a lazy row array of `compressa_hf.rows`, read a batch at a time)."""
    check_options("float16", temperature)
    device = torch.device(device) if device is not None else next(teacher.parameters()).device
    teacher.eval()
    out = [
        torch.softmax(
            teacher(frames[i : i + batch_size].to(device).float().div_(255)).float() / temperature, dim=1
        ).cpu()
        for i in range(0, len(frames), batch_size)
    ]
    if not out:
        raise ValueError("no rows to label")
    return torch.cat(out)


def teacher_for(
    path: str,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    arch: str,
    cfg,
    seed: int,
    fit: Callable,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The teacher of `seed`: loaded from `path` (safetensors) if there, else trained and saved there atomically.

    Args:
        path: Cache file of this teacher (its metadata records what it was trained with; a mismatch is an error).
        pixels: `(N, T, 3, H, W)` uint8 real training clips (the full split).
        labels: `(N,)` int64.
        num_classes: Classes.
        arch: Network name (`compressa_hf.nets.NETS`).
        cfg: The students' `compressa_hf.evaluation.train.TrainConfig`.
        seed: Seeds the teacher's initialisation and shuffling (the run's seed).
        fit: The students' training function, `compressa_hf.evaluation.train.train_network`
            (`fit(pixels, labels, num_classes, arch, cfg, seed, device, progress) -> (net, loss, epoch_seconds)`).
        device: Where it trains and predicts.
        progress: Progress bar over epochs.

    Returns the network (eval mode, on `device`) and its metadata (`arch`, `seed`, `train_config`, `clips`,
    `train_accuracy`, `train_s`).
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from compressa_hf.nets import build_net

    want = {
        "arch": arch,
        "seed": seed,
        "num_classes": num_classes,
        "clips": int(len(labels)),
        "labels_sha1": hashlib.sha1(labels.to(torch.int64).numpy().tobytes()).hexdigest(),
        "frame_size": list(pixels.shape[-2:]),
        "train_config": dataclasses.asdict(cfg),
    }
    if os.path.exists(path):
        with safe_open(path, "pt") as f:
            meta = json.loads(f.metadata()["teacher"])
            state = {k: f.get_tensor(k) for k in f.keys()}
        differ = sorted(k for k in want if meta.get(k) != want[k])
        if differ:
            raise ValueError(
                f"teacher {path} was trained with other settings ({', '.join(differ)}); delete it or use another "
                "--output"
            )
        net = build_net(arch, num_classes, tuple(pixels.shape[-2:]), width=cfg.width)
        net.load_state_dict(state)
        return net.to(device).eval(), meta
    start = time.perf_counter()
    net, _, _ = fit(pixels, labels, num_classes, arch, cfg, seed, device, progress)
    predictions = teacher_probabilities(net, pixels, batch_size=cfg.test_batch_size, device=device).argmax(dim=1)
    train_accuracy = float((predictions == labels.cpu()).float().mean())
    meta = {**want, "train_accuracy": train_accuracy, "train_s": time.perf_counter() - start}
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    save_file(state, tmp, metadata={"teacher": json.dumps(meta)})
    os.replace(tmp, path)
    logger.info("teacher %s seed %d: train accuracy %.1f %% (%s)", arch, seed, 100 * train_accuracy, path)
    return net.eval(), meta


def relabel(
    cset: CompressedSet,
    teacher: torch.nn.Module,
    codec,
    budget_bytes: int,
    dtype: str = "float16",
    temperature: float = 1.0,
    device: str | torch.device | None = None,
    teacher_info: dict[str, Any] | None = None,
) -> CompressedSet:
    """`cset` with the teacher's soft labels stored as `stored["soft_labels"]`, named `<method>+soft`.

    The labels are predicted from `cset.frames(codec)`, quantised to `dtype` and counted: the result's stored bytes
    are `cset`'s plus exactly `M * C * itemsize`. Raises `ValueError` when they do not fit in `budget_bytes` (the
    method was run without `MethodContext.label_bytes_per_video`, or ignores it), naming the method and the bytes.
    """
    check_options(dtype, temperature)
    if "soft_labels" in cset.stored:
        raise ValueError(f"set {cset.method!r} already stores soft labels")
    frames = cset.frames(codec, device=device)
    probs = teacher_probabilities(teacher, frames, temperature, device=device)
    stored = quantise(probs, dtype)
    need = cset.stored_bytes + stored.numel() * stored.element_size()
    if need > budget_bytes:
        raise ValueError(
            f"{cset.method}: the soft labels of its {cset.num_rows} rows ({stored.numel() * stored.element_size():,} "
            f"bytes, {stored.shape[1]} classes x {stored.element_size()} as {dtype}) do not fit: the set already "
            f"stores {cset.stored_bytes:,} of {budget_bytes:,} bytes; run the method with "
            f"MethodContext.label_bytes_per_video={stored.shape[1] * stored.element_size()} so it leaves the room"
        )
    read_back = dequantise(stored)
    info = {
        "dtype": dtype,
        "temperature": temperature,
        "bytes": stored.numel() * stored.element_size(),
        "teacher": teacher_info or {},
        "agreement": float((probs.argmax(dim=1) == cset.labels).float().mean()),
        "mean_max_probability": float(probs.max(dim=1).values.mean()),
        "max_quantisation_error": float((read_back - probs).abs().max()),
    }
    relabelled = dataclasses.replace(
        cset,
        method=soft_name(cset.method),
        stored={**cset.stored, "soft_labels": stored},
        info={**cset.info, "soft_labels": info},
    )
    return check_budget(relabelled, budget_bytes)


@dataclass
class SoftLabeller:
    """What `compressa evaluate --soft_labels true` needs: one cached teacher per (training set, seed) and the
    relabelling of a method's set; `settings` is what a saved `+soft` set must have been made with to be reused.

    Args:
        teacher_dir: Folder of the cached teachers (`<prefix><arch>_s<seed>.safetensors`; the prefix names the
            training set, e.g. a fold, so a teacher never sees another part's held-out clips).
        num_classes: Classes.
        cfg: The students' `TrainConfig` (the teacher's protocol too).
        fit: The students' training function (`teacher_for`).
        arch: Teacher network.
        dtype: Storage dtype of the labels (`DTYPES`).
        temperature: Teacher softmax temperature.
        device: Where the teacher trains and predicts.
        progress: Progress bars.
    """

    teacher_dir: str
    num_classes: int
    cfg: Any
    fit: Callable
    arch: str = "convnet"
    dtype: str = "float16"
    temperature: float = 1.0
    device: str | torch.device = "cpu"
    progress: bool = False
    _teachers: dict[tuple[str, int], tuple[torch.nn.Module, dict]] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self):
        check_options(self.dtype, self.temperature)

    @property
    def bytes_per_row(self) -> int:
        """Bytes each kept row reserves for its labels (`MethodContext.label_bytes_per_video`)."""
        return label_bytes(self.num_classes, self.dtype)

    @property
    def settings(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "temperature": self.temperature, "teacher": self.arch}

    def teacher(
        self, seed: int, pixels: torch.Tensor, labels: torch.Tensor, prefix: str = ""
    ) -> tuple[torch.nn.Module, dict]:
        """`teacher_for` on the training clips `pixels` / `labels` named by `prefix`, kept in memory for reuse."""
        key = (prefix, seed)
        if key not in self._teachers:
            self._teachers.clear()  # parts and seeds run one after another: keep one teacher in memory
            path = os.path.join(self.teacher_dir, f"{prefix}{self.arch}_s{seed}.safetensors")
            self._teachers[key] = teacher_for(
                path, pixels, labels, self.num_classes, self.arch, self.cfg, seed, self.fit, self.device, self.progress
            )
        return self._teachers[key]

    def __call__(
        self,
        cset: CompressedSet,
        codec,
        budget_bytes: int,
        seed: int,
        pixels: torch.Tensor,
        labels: torch.Tensor,
        prefix: str = "",
    ) -> CompressedSet:
        """`relabel` with the teacher of (`prefix`, `seed`) trained on `pixels` / `labels`; the set's info records
        `settings`."""
        net, meta = self.teacher(seed, pixels, labels, prefix)
        teacher_info = {k: meta[k] for k in ("arch", "seed", "train_accuracy") if k in meta}
        out = relabel(cset, net, codec, budget_bytes, self.dtype, self.temperature, self.device, teacher_info)
        out.info["soft_labels"]["settings"] = self.settings
        return out
