"""LVDD-style latent video distillation (Li et al., "Latent Video Dataset Distillation"): diverse whole clips per
class, chosen on their latents, each recompressed without training so that the saved bytes buy more clips.

1. Size. A kept clip's latents `(T, C, h, w)` are recompressed to at most `keep` times the bytes a whole-clip
   coreset spends on it (T * C * h * w at uint8; twice that when the run asks for float16 latents). `tucker`
   stores a Tucker core and four factor matrices, `pca` the coefficients and components of a rank-r factorisation
   of the clip's `T x (C h w)` frame matrix; both as float16, all of whose bytes are counted. The ranks are fixed
   before any clip is chosen, so every clip costs the same `bytes_per_video`.
2. Count. The same number v of clips for every class (a class with fewer keeps all), the largest v whose clips fit
   in `ctx.budget_bytes` - about 1 / keep times what the uint8 whole-clip coreset (`ctx.plan(frames_per_video=T)`)
   keeps. Each clip also pays the `ctx.label_bytes_per_video` reserved for its soft labels, if any. A ratio too
   small for one clip per class is an error naming the smallest ratio that works.
3. Choose. Within each class, v clips by diversity over their flattened latents: a k-DPP sample (`kdpp`) or the
   clip nearest each k-means centroid (`kmeans`), seeded by the run's seed.
4. Store. `stored` holds exactly the float16 cores / factors / components (stacked over clips); `latents` is the
   float32 reconstruction from those float16 tensors, which the evaluation decodes.

Only what the LVDD abstract describes is reproduced (latent space, diversity-aware selection, training-free
recompression); the kernel, the rank choice and the count rule above are this module's. Needs `dppy` (k-DPP
sampling), `scikit-learn` (k-means) and `tensorly` (Tucker), each imported when used.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

from compressa_hf.distillation.budget import DTYPE_BYTES, videos_per_class_cap
from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, check_budget

KIND = "synthesis"
__all__ = [
    "KIND",
    "Options",
    "compress",
    "mode_spectra",
    "pca_compress",
    "pca_elements",
    "pca_rank",
    "pca_reconstruct",
    "rbf_kernel",
    "select_kdpp",
    "select_kmeans",
    "tucker_compress",
    "tucker_elements",
    "tucker_ranks",
    "tucker_reconstruct",
]

logger = logging.getLogger(__name__)

STORE_DTYPE = torch.float16
STORE_BYTES = 2


@dataclass
class Options:
    """LVDD's choices (the seed is the run's `ctx.seed`).

    Args:
        select: Diversity rule within a class: "kdpp" (k-DPP sample over an RBF kernel of the latents) or
            "kmeans" (the clip nearest each of k k-means centroids).
        method: Recompression: "tucker" (Tucker core + factors) or "pca" (rank-r factorisation of the frame matrix).
        keep: Fraction of a whole clip's coreset bytes that its recompressed form may use, in (0, 1]. 0.75 is the
            value the VideoCompressa paper reports for its LVDD baseline ("Tucker/PCA compression at a ratio of
            0.75").
        tucker_iterations: HOOI iterations of `tensorly.decomposition.tucker` (from the truncated-HOSVD start).
    """

    select: str = field(default="kdpp", metadata={"help": "Diversity rule: kdpp or kmeans."})
    method: str = field(default="tucker", metadata={"help": "Recompression: tucker or pca."})
    keep: float = field(default=0.75, metadata={"help": "Fraction of a whole clip's bytes kept, in (0, 1]."})
    tucker_iterations: int = field(default=100, metadata={"help": "HOOI iterations of the Tucker decomposition."})

    def __post_init__(self):
        if self.select not in SELECTORS:
            raise ValueError(f"lvdd: `select` must be one of {sorted(SELECTORS)}, got {self.select!r}")
        if self.method not in ("tucker", "pca"):
            raise ValueError(f"lvdd: `method` must be 'tucker' or 'pca', got {self.method!r}")
        if not 0 < self.keep <= 1:
            raise ValueError(f"lvdd: `keep` must be in (0, 1], got {self.keep}")
        if self.tucker_iterations < 1:
            raise ValueError(f"lvdd: `tucker_iterations` must be >= 1, got {self.tucker_iterations}")


# ----------------------------------------------------------------------------------------------------- selection


def _seed_for(seed: int, group: int) -> int:
    """An independent 32-bit seed per (run seed, class), so classes do not share random streams."""
    return int(np.random.SeedSequence([seed, group]).generate_state(1)[0])


def rbf_kernel(features: np.ndarray) -> np.ndarray:
    """Gaussian similarity `exp(-||x_i - x_j||^2 / median)` of the rows of `features`, the bandwidth being the
    median squared distance between distinct rows (the median heuristic; 1 when all rows coincide). It is
    positive definite on distinct rows, so a k-DPP can pick any k distinct clips and never two identical ones."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    sq = np.einsum("ij,ij->i", x, x)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    off = dist[~np.eye(len(x), dtype=bool)]
    scale = float(np.median(off)) if off.size else 1.0
    return np.exp(-dist / (scale if scale > 0 else 1.0))


def select_kdpp(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    """`k` row positions (ascending) sampled from the k-DPP with `rbf_kernel(features)` as L-ensemble: subsets
    are drawn with probability proportional to det(L_S), so near-duplicates are rarely and exact duplicates never
    picked together. Exact sampling by DPPy (spectral method); all rows when k >= their number."""
    n = len(features)
    if k >= n:
        return np.arange(n)
    from dppy.finite_dpps import FiniteDPP  # heavy import (matplotlib), only when a k-DPP is asked for

    kernel = rbf_kernel(features)
    if np.linalg.matrix_rank(kernel, hermitian=True) < k:
        # Fewer than k distinct clips: some duplicates must be picked; the jitter makes the k-DPP well defined.
        kernel = kernel + 1e-6 * np.eye(n)
    dpp = FiniteDPP("likelihood", L=kernel)
    sample = dpp.sample_exact_k_dpp(size=k, random_state=np.random.RandomState(seed))
    return np.sort(np.asarray(sample, dtype=np.int64))


def select_kmeans(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    """`k` row positions (ascending): k-means (scikit-learn, k clusters) and, for each centroid, a real row
    nearest to it - matched one-to-one (Hungarian assignment on the distances) so two centroids never claim the
    same row. All rows when k >= their number."""
    n = len(features)
    if k >= n:
        return np.arange(n)
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist
    from sklearn.cluster import KMeans

    x = np.asarray(features, dtype=np.float64).reshape(n, -1)
    centres = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x).cluster_centers_
    _, rows = linear_sum_assignment(cdist(centres, x))
    return np.sort(rows.astype(np.int64))


SELECTORS = {"kdpp": select_kdpp, "kmeans": select_kmeans}


# ------------------------------------------------------------------------------------------------- recompression


def tucker_elements(shape: tuple[int, ...], ranks: tuple[int, ...]) -> int:
    """Numbers a Tucker decomposition of one `shape` tensor stores: the core plus one `n_i x r_i` factor a mode."""
    return math.prod(ranks) + sum(n * r for n, r in zip(shape, ranks))


@torch.no_grad()
def mode_spectra(latents: torch.Tensor, chunk: int = 256) -> list[np.ndarray]:
    """For each mode of the clips `(N, *shape)`, the eigenvalues (descending) of the mode-i Gram matrix of every
    clip, summed over clips: the energy the clips keep along that mode at each rank."""
    shape = latents.shape[1:]
    spectra = [np.zeros(n) for n in shape]
    for part in torch.split(latents, chunk):
        x = part.to(torch.float64)
        for i, n in enumerate(shape):
            unfolded = x.movedim(i + 1, 1).reshape(len(x), n, -1)
            eig = torch.linalg.eigvalsh(unfolded @ unfolded.transpose(1, 2)).clamp_min(0)
            spectra[i] += eig.flip(-1).sum(0).numpy()
    return spectra


def tucker_ranks(shape: tuple[int, ...], max_elements: int, spectra: list[np.ndarray]) -> tuple[int, ...]:
    """The Tucker ranks, one a mode, that fit in `max_elements` numbers and minimise the truncated-HOSVD error
    bound sum_i sum_{j >= r_i} spectra[i][j] (De Lathauwer et al., 2000); ties go to fewer numbers.

    Every rank tuple is scored (prod(shape) of them: 12,544 for 16 x 4 x 14 x 14). Ranks with r_i > prod_{j!=i} r_j
    are skipped: the core's mode-i unfolding could not use them.
    """
    grids = np.meshgrid(*[np.arange(1, n + 1) for n in shape], indexing="ij")
    ranks = np.stack([g.ravel() for g in grids], axis=1)  # (tuples, modes)
    prod = ranks.prod(axis=1)
    elements = prod + ranks @ np.asarray(shape)
    useful = np.all(ranks * ranks <= prod[:, None], axis=1)  # r_i <= prod_{j != i} r_j
    feasible = useful & (elements <= max_elements)
    if not feasible.any():
        smallest = tucker_elements(shape, (1,) * len(shape))
        raise ValueError(
            f"Tucker of a {tuple(shape)} clip needs >= {smallest} numbers, `keep` allows {max_elements}; raise `keep`"
        )
    tails = [np.concatenate([np.cumsum(s[::-1])[::-1], [0.0]]) for s in spectra]  # tails[i][r] = sum_{j>=r}
    bound = sum(tails[i][ranks[:, i]] for i in range(len(shape)))
    candidates = np.flatnonzero(feasible)
    best = candidates[np.lexsort((elements[candidates], bound[candidates]))[0]]
    return tuple(int(r) for r in ranks[best])


def tucker_compress(
    latents: torch.Tensor, ranks: tuple[int, ...], iterations: int = 100, track=None
) -> dict[str, torch.Tensor]:
    """Tucker-decompose each clip of `(M, *shape)` at `ranks` (tensorly's HOOI from a truncated HOSVD) and return
    the stored tensors: `core` `(M, *ranks)` and `factor_i` `(M, n_i, r_i)`, float16. `track(iterable, desc, total,
    unit)` wraps the loop over clips (a progress bar, `MethodContext.track`)."""
    import tensorly as tl
    from tensorly.decomposition import tucker

    cores, factors = [], [[] for _ in ranks]
    clips = latents.to(torch.float64).numpy()
    if track is not None:
        clips = track(clips, "lvdd: tucker", len(clips), "clip")
    with tl.backend_context("numpy"):
        for clip in clips:
            core, mats = tucker(tl.tensor(clip), rank=list(ranks), n_iter_max=iterations, init="svd")
            cores.append(core)
            for i, mat in enumerate(mats):
                factors[i].append(mat)
    stored = {"core": torch.from_numpy(np.stack(cores)).to(STORE_DTYPE)}
    stored.update({f"factor_{i}": torch.from_numpy(np.stack(f)).to(STORE_DTYPE) for i, f in enumerate(factors)})
    return stored


def tucker_reconstruct(stored: dict[str, torch.Tensor]) -> torch.Tensor:
    """`(M, *shape)` float32 clips rebuilt from `tucker_compress`'s tensors (core x_1 U_1 ... x_4 U_4)."""
    x = stored["core"].float()
    for i in range(x.dim() - 1):
        # Mode-(i+1) product, batched over clips: contract the core's axis i+1 with factor_i's rank axis.
        x = torch.movedim(
            torch.einsum("m...r,mnr->m...n", x.movedim(i + 1, -1), stored[f"factor_{i}"].float()), -1, i + 1
        )
    return x


def pca_elements(shape: tuple[int, ...], rank: int) -> int:
    """Numbers a rank-r factorisation of one clip's `T x (C h w)` frame matrix stores: coefficients and components."""
    frames, rest = shape[0], math.prod(shape[1:])
    return rank * (frames + rest)


def pca_rank(shape: tuple[int, ...], max_elements: int) -> int:
    """The largest rank whose factorisation fits in `max_elements` numbers (at most min(T, C h w))."""
    frames, rest = shape[0], math.prod(shape[1:])
    rank = min(max_elements // (frames + rest), frames, rest)
    if rank < 1:
        raise ValueError(
            f"PCA of a {tuple(shape)} clip needs >= {frames + rest} numbers, `keep` allows {max_elements}; raise `keep` or use tucker"
        )
    return rank


@torch.no_grad()
def pca_compress(latents: torch.Tensor, rank: int) -> dict[str, torch.Tensor]:
    """Best rank-r approximation (truncated SVD) of each clip's `T x (C h w)` frame matrix: `coefficients`
    `(M, T, r)` (= U S) and `components` `(M, r, C h w)`, float16.

    Uncentred on purpose: mean + r principal components is a rank-(r+1) matrix, so a rank-(r+1) SVD (Eckart-Young)
    reconstructs at least as well for T more numbers than storing the mean frame, and is what a small budget
    affords. Exact SVD (torch.linalg.svd) rather than `torch.pca_lowrank`: the matrices are tiny, and the
    randomised solver would make the set depend on a global RNG."""
    x = latents.to(torch.float64).flatten(2)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    return {
        "coefficients": (u[..., :rank] * s[:, None, :rank]).to(STORE_DTYPE),
        "components": vh[:, :rank].to(STORE_DTYPE),
    }


def pca_reconstruct(stored: dict[str, torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    """`(M, *shape)` float32 clips rebuilt from `pca_compress`'s tensors."""
    x = stored["coefficients"].float() @ stored["components"].float()
    return x.reshape(len(x), *shape)


# ------------------------------------------------------------------------------------------------------- method


def compress(ctx: MethodContext) -> CompressedSet:
    opts = ctx.method_options(Options, "lvdd")
    counts = ctx.counts_per_class()
    shape = (ctx.num_frames, *ctx.latent_shape)
    # What a whole-clip coreset spends on one clip: uint8 latents unless the run asked for float16 ones.
    if ctx.dtype == "uint4":
        raise ValueError("lvdd stores recompressed clips (Tucker / PCA factors); --dtype uint4 does not apply to it")
    reference_dtype = "float16" if ctx.dtype == "float16" else "uint8"
    reference_bytes = math.prod(shape) * DTYPE_BYTES[reference_dtype]
    max_elements = math.floor(Fraction(str(opts.keep)) * reference_bytes) // STORE_BYTES
    if opts.method == "tucker":
        ranks = tucker_ranks(shape, max_elements, mode_spectra(ctx.latents_tensor().cpu()))
        sizes = {"ranks": list(ranks)}
        bytes_per_video = tucker_elements(shape, ranks) * STORE_BYTES
    else:
        rank = pca_rank(shape, max_elements)
        sizes = {"rank": rank}
        bytes_per_video = pca_elements(shape, rank) * STORE_BYTES

    row_bytes = bytes_per_video + ctx.label_bytes_per_video  # a clip pays for its soft labels too, if reserved
    v = videos_per_class_cap(counts, ctx.budget_bytes // row_bytes)
    if v < 1:
        smallest = Fraction(100 * ctx.num_classes * row_bytes, ctx.full_bytes)
        labels = f" + {ctx.label_bytes_per_video} label bytes" if ctx.label_bytes_per_video else ""
        raise ValueError(
            f"lvdd: ratio {ctx.ratio}% ({ctx.budget_bytes:,} bytes) cannot hold one {opts.method}-recompressed clip "
            f"({bytes_per_video:,} bytes at keep={opts.keep}{labels}) for each of the {ctx.num_classes} classes; "
            f"the smallest ratio that can is {math.ceil(smallest * 10**6) / 10**6:.6f}% (or lower `keep`)"
        )

    keep: list[int] = []
    for c in ctx.track(range(ctx.num_classes), f"lvdd: {opts.select}", ctx.num_classes, "class"):
        members = torch.nonzero(ctx.labels == c).flatten()
        features = ctx.latents[members].float().flatten(1).cpu().numpy()
        chosen = SELECTORS[opts.select](features, v, _seed_for(ctx.seed, c))
        keep += members[torch.from_numpy(chosen)].tolist()
    videos = torch.tensor(sorted(keep), dtype=torch.long)
    originals = ctx.latents[videos].float().cpu()

    if opts.method == "tucker":
        stored = tucker_compress(originals, ranks, opts.tucker_iterations, track=ctx.track)
        latents = tucker_reconstruct(stored)
    else:
        stored = pca_compress(originals, rank)
        latents = pca_reconstruct(stored, shape)
    error = ((latents - originals).flatten(1).norm(dim=1) / originals.flatten(1).norm(dim=1).clamp_min(1e-12)).mean()

    try:
        whole_clip_videos = ctx.plan(frames_per_video=ctx.num_frames).total_videos
    except ValueError:  # not even one uint8 clip per class fits
        whole_clip_videos = 0
    info = {
        "lvdd": {
            "select": opts.select,
            "method": opts.method,
            "keep": opts.keep,
            **sizes,
            "reference_dtype": reference_dtype,
            "reference_bytes_per_video": reference_bytes,
            "bytes_per_video": bytes_per_video,
            "label_bytes_per_video": ctx.label_bytes_per_video,
            "videos_per_class": [min(v, n) for n in counts],
            "whole_clip_coreset_videos": whole_clip_videos,
            "relative_reconstruction_error": float(error),
        }
    }
    logger.info(
        "lvdd: %d clips (%d per class; a whole-clip coreset keeps %d) as %s at %d bytes each, rel. error %.4f",
        len(videos),
        v,
        whole_clip_videos,
        opts.method,
        bytes_per_video,
        float(error),
    )
    cset = CompressedSet(
        method="lvdd",
        labels=ctx.labels[videos].clone(),
        stored=stored,
        latents=latents,
        source_videos=videos,
        frame_indices=torch.arange(ctx.num_frames).expand(len(videos), -1).clone(),
        info=info,
    )
    if cset.stored_bytes != len(videos) * bytes_per_video:
        raise AssertionError(f"lvdd: stored {cset.stored_bytes} bytes, expected {len(videos)} x {bytes_per_video}")
    return check_budget(cset, ctx.budget_bytes)
