"""Optimisers of the latents Z (VideoCompressa, arXiv 2511.18831: Adam at 1e-2), stepped on rows (latent frames):
the gradient arrives per row, from chunks of frames decoded with grad, not as the `.grad` of one leaf.
`LATENT_OPTIMIZERS` maps `VideoCompressaConfig.latent_optimizer` to the class. Each takes `(param, lr, alloc)` and
offers `step(rows, grad) -> rows moved`, `state_dict()` and `load_state_dict()`; `alloc(name, shape, dtype)` makes
per-row state (`LazyRowAdam`'s moments and step counts: zero tensors in memory, or the disk-backed `RowFile`s of
`state.StateStorage`). `DenseAdam` keeps torch's state in memory, `RowSGD` none."""

from __future__ import annotations

import torch


def _zeros(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The in-memory allocator of optimiser state (the disk-backed one makes `RowFile`s)."""
    return torch.zeros(shape, dtype=dtype)


class LazyRowAdam:
    """Adam over the rows (latent frames) of a tensor, stepping only the rows given gradient.

    Why hand-written: the gradient arrives per row, from chunks of frames decoded with grad, not as the `.grad` of
    one leaf; `torch.optim.SparseAdam` would need a sparse gradient of the whole tensor and keeps one step count for
    all rows, so a row trained once per pass would get a bias correction for N / B steps it never took. Here each
    row has its own step count, which makes the update exactly `torch.optim.Adam`'s for a parameter holding that
    row alone. The formula mirrors torch's (`denom = sqrt(v) / sqrt(1 - b2^t) + eps`, `step = lr / (1 - b1^t)`).
    """

    def __init__(
        self,
        param,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        alloc=None,
    ):
        alloc = alloc or _zeros
        self.param = param
        self.lr, self.betas, self.eps = lr, betas, eps
        self.exp_avg = alloc("exp_avg", tuple(param.shape), param.dtype)
        self.exp_avg_sq = alloc("exp_avg_sq", tuple(param.shape), param.dtype)
        self.steps = alloc("steps", (param.shape[0],), torch.int64)

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Update `param[rows]` with `grad` (one gradient per row; rows must be distinct); returns the rows moved."""
        beta1, beta2 = self.betas
        self.steps[rows] += 1
        t = self.steps[rows].to(self.param.dtype).view(-1, *([1] * (self.param.dim() - 1)))
        grad = grad.to(self.param.dtype)
        m = self.exp_avg[rows].mul_(beta1).add_(grad, alpha=1 - beta1)
        v = self.exp_avg_sq[rows].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        self.exp_avg[rows] = m
        self.exp_avg_sq[rows] = v
        denom = (v.sqrt() / (1 - beta2**t).sqrt()).add_(self.eps)
        self.param[rows] = self.param[rows] - (self.lr / (1 - beta1**t)) * m / denom
        return rows

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.steps.copy_(state["steps"])


class DenseAdam:
    """`torch.optim.Adam` over the whole `(rows, ...)` tensor: the rows not given gradient this step get a zero
    gradient, so their moments decay and their momentum keeps moving them (one step count for all rows)."""

    def __init__(self, param: torch.Tensor, lr: float, alloc=None):
        self.param = param
        self.opt = torch.optim.Adam([param], lr=lr)

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Step with `grad` on `rows` and zero elsewhere; returns the rows that moved (nonzero momentum)."""
        full = torch.zeros_like(self.param)
        full[rows] = grad.to(self.param.dtype)
        self.param.grad = full
        self.opt.step()
        self.param.grad = None
        moving = self.opt.state[self.param]["exp_avg"].flatten(1).ne(0).any(dim=1)
        return torch.nonzero(moving).flatten()

    def state_dict(self) -> dict:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state)


class RowSGD:
    """Plain SGD on the rows given gradient: `param[rows] -= lr * grad` (no momentum, no state)."""

    def __init__(self, param, lr: float, alloc=None):
        self.param, self.lr = param, lr

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        self.param[rows] = self.param[rows] - self.lr * grad.to(self.param.dtype)
        return rows

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


LATENT_OPTIMIZERS = {"lazy_adam": LazyRowAdam, "adam": DenseAdam, "sgd": RowSGD}
