"""`compressa distill --method auto`: choose the method and the budget's allocation on a validation split carved from
the training split, then distil the whole split with the winner.

Why: which method wins, and how its bytes are best spent (more frames per video or more videos, 8-bit or 4-bit
latents), depends on the data; on arid6_iid DM and uniform frames led and VideoCompressa trailed (BENCHMARKS.md), on
another set it may be the other way. A user with their own clips gets the best set this project can make for their
bytes with one command, chosen the way a careful experimenter would: never on the test split.

How:
1. Candidates: every method of `auto_methods` x storage dtype of `auto_dtypes` x frames per video of
   `auto_frames_per_video` (`plan`: the planner's K; an integer fixes K for the methods that store the planner's K,
   `FIXED_K_METHODS`, which keep fewer videos per class to pay for it) x labels of `auto_soft_labels` (`none`: hard
   labels; `float16` / `uint8`: a teacher's soft labels paid from the budget, `compressa_hf.distillation.soft_labels`;
   the teacher trains with the candidates' protocol below, and so does the published set's teacher when soft labels
   win) x stored frame side of `auto_store_sides` (`size`: the codec as given; a side below `--size`: the codec
   wrapped as `resize:<side>/<size>:<codec>`, `compressa_hf.codecs.resized`, smaller latent frames and so more of
   them). A `k<K>` ratio is first resolved with the codec as given, so every candidate has the same bytes. A method
   that cannot take an allocation (PRISM at uint4, a whole-clip coreset at a fixed K) is listed as n/a, not run.
2. Validation: `compressa evaluate`'s validation protocol (`compressa_hf.evaluation.runner`, `--validation_fraction`):
   a stratified `auto_validation_fraction` of the training split (seeded by `--seed`; in whole groups for UCF101-named
   clips, `auto_validation_groups`) is held out, each candidate
   distils the rest at the same ratio, a network (`auto_arch`, `auto_epochs` epochs of batch `auto_batch_size`,
   width `auto_width`) trains from scratch on the result for each of `auto_seeds` seeds and is tested on the held-out
   clips; the full-data reference trains on all of the rest. The test split is never listed, decoded or read. The
   runs live in `<work_dir>/auto/` and resume like every `compressa evaluate` run. This module sits in `evaluation/`
   because it runs evaluations; `compressa distill` calls it.
3. Choice: the candidate with the best mean validation accuracy over seeds; a tie goes to the first in candidate
   order (methods as listed, then dtypes, then K, then labels, then sides), so list the cheaper options first.
4. The winner distils the whole training split as `--method`, `--dtype`, `--frames_per_video`, `--soft_labels`
   and `--codec` would, into config `auto_ratio_<r>`; the card names the chosen method and allocation and holds the
   validation table (`meta["auto"]`, and `card_text` for the card).
The validation numbers choose; they are not a test result (the held-out clips trained nothing but are few): report a
set's accuracy with `compressa evaluate` on the test split.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

logger = logging.getLogger(__name__)

AUTO = "auto"
#: The fields of a table entry that name its candidate (`Candidate.key`).
KEY_FIELDS = ("method", "dtype", "frames_per_video", "soft_labels", "store_side")
DTYPES = ("uint8", "float16", "uint4")


def _items(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated option."""
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass
class AutoArguments:
    """Options of `compressa distill --method auto` (see the module docstring); ignored by every other method.

    Args:
        auto_methods: Comma-separated methods to compare (`compressa_hf.distillation.methods.METHODS`, not `full`).
            The default holds the rows at or near the top of BENCHMARKS.md's real-clip tables at no or little
            distillation cost: uniform frames, random frames (4-5 points over uniform frames at ucf101_19 k2, Table 1
            (a6)) and DM (the best mean on arid6_iid).
        auto_dtypes: Comma-separated latent storage dtypes to compare: uint8, float16, uint4.
        auto_frames_per_video: Comma-separated K to compare: `plan` (the planner's largest K for every video) and/or
            integers (K fixed, fewer videos per class).
        auto_soft_labels: Comma-separated labels to compare: `none` (hard labels) and at most one soft-label dtype
            (`float16` or `uint8`).
        auto_store_sides: Comma-separated stored frame sides to compare: `size` (the codec as given) and/or pixel
            sides below `--size` (the codec at that side, `resize:<side>/<size>:<codec>`).
        auto_validation_fraction: Stratified share of the training split held out for the choice.
        auto_validation_groups: Hold out whole groups (`compressa evaluate --validation_groups`): `auto` (UCF101's
            groups when the clips are so named), `none`, or a regular expression naming a clip's group.
        auto_seeds: Seeds per candidate (networks and methods).
        auto_arch: Network trained from scratch on each candidate (`compressa_hf.nets.NETS`).
        auto_epochs / auto_batch_size / auto_width / auto_lr: Its training (SGD, the protocol of
            `compressa_hf.evaluation.train`). The defaults are the CPU-sized protocol of BENCHMARKS.md's Table 1.
    """

    auto_methods: str = field(
        default="uniform,random_frame,dm", metadata={"help": "--method auto: methods to compare."}
    )
    auto_dtypes: str = field(default="uint8,uint4", metadata={"help": "--method auto: storage dtypes to compare."})
    auto_frames_per_video: str = field(
        default="plan", metadata={"help": "--method auto: K to compare (`plan` and/or integers)."}
    )
    auto_soft_labels: str = field(
        default="none", metadata={"help": "--method auto: labels to compare (`none`, and float16 or uint8)."}
    )
    auto_store_sides: str = field(
        default="size", metadata={"help": "--method auto: stored frame sides to compare (`size` and/or pixels)."}
    )
    auto_validation_fraction: float = field(default=0.3, metadata={"help": "--method auto: held-out share."})
    auto_validation_groups: str = field(
        default="auto", metadata={"help": "--method auto: hold out whole groups (auto: UCF101's gGG, none, regex)."}
    )
    auto_seeds: int = field(default=2, metadata={"help": "--method auto: seeds per candidate."})
    auto_arch: str = field(default="convnet", metadata={"help": "--method auto: network trained on each."})
    auto_epochs: int = field(default=40, metadata={"help": "--method auto: training epochs."})
    auto_batch_size: int = field(default=32, metadata={"help": "--method auto: training batch size."})
    auto_width: int = field(default=32, metadata={"help": "--method auto: network width."})
    auto_lr: float = field(default=0.01, metadata={"help": "--method auto: SGD learning rate."})

    def __post_init__(self):
        from compressa_hf.distillation.methods import METHODS
        from compressa_hf.nets import NETS

        bad = [m for m in self.method_list if m not in METHODS or m == "full"]
        if bad or not self.method_list:
            raise ValueError(
                f"--auto_methods: unknown or unusable method(s) {bad or [self.auto_methods]}; choose from "
                f"{sorted(m for m in METHODS if m != 'full')}"
            )
        bad = [d for d in self.dtype_list if d not in DTYPES]
        if bad or not self.dtype_list:
            raise ValueError(f"--auto_dtypes: {bad or [self.auto_dtypes]} not in {list(DTYPES)}")
        for token in self._frames_tokens:
            if token != "plan" and not (token.isdigit() and int(token) >= 1):
                raise ValueError(f"--auto_frames_per_video: {token!r} is neither `plan` nor an integer >= 1")
        if not self._frames_tokens:
            raise ValueError("--auto_frames_per_video is empty; give `plan` and/or integers")
        labels = self.soft_list
        if not labels or any(s not in ("none", "float16", "uint8") for s in labels):
            raise ValueError(f"--auto_soft_labels: {self.auto_soft_labels!r} is not `none`, `float16` or `uint8`")
        if len([s for s in labels if s != "none"]) > 1:
            raise ValueError("--auto_soft_labels compares at most one soft-label dtype (and `none`)")
        for token in self._side_tokens:
            if token != "size" and not (token.isdigit() and int(token) >= 1):
                raise ValueError(f"--auto_store_sides: {token!r} is neither `size` nor a side in pixels")
        if not self._side_tokens:
            raise ValueError("--auto_store_sides is empty; give `size` and/or sides in pixels")
        if not 0 < self.auto_validation_fraction < 1:
            raise ValueError(f"--auto_validation_fraction must be in (0, 1), got {self.auto_validation_fraction}")
        if self.auto_arch not in NETS:
            raise ValueError(f"--auto_arch {self.auto_arch!r} unknown; known: {sorted(NETS)}")
        for name in ("auto_seeds", "auto_epochs", "auto_batch_size", "auto_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")

    @property
    def method_list(self) -> list[str]:
        return _items(self.auto_methods)

    @property
    def dtype_list(self) -> list[str]:
        return _items(self.auto_dtypes)

    @property
    def _frames_tokens(self) -> list[str]:
        return _items(self.auto_frames_per_video)

    @property
    def _side_tokens(self) -> list[str]:
        return _items(self.auto_store_sides)

    @property
    def side_list(self) -> list[int | None]:
        """Stored sides to compare; None is the codec as given."""
        return [None if k == "size" else int(k) for k in self._side_tokens]

    @property
    def soft_list(self) -> list[str]:
        return _items(self.auto_soft_labels)

    @property
    def frames_list(self) -> list[int | None]:
        """K values to compare; None is the planner's own K."""
        return [None if k == "plan" else int(k) for k in self._frames_tokens]

    def train_config(self):
        """The `TrainConfig` every candidate's network (and a soft-label teacher) trains with."""
        from compressa_hf.evaluation.train import TrainConfig

        return TrainConfig(
            epochs=self.auto_epochs, batch_size=self.auto_batch_size, width=self.auto_width, lr=self.auto_lr
        )


@dataclass(frozen=True)
class Candidate:
    """One way to spend the budget: a method, a storage dtype, K (None: the planner's), soft labels (their dtype, or
    None for hard labels) and the stored frame side (None: the codec as given)."""

    method: str
    dtype: str
    frames_per_video: int | None
    soft_labels: str | None = None
    store_side: int | None = None

    @property
    def allocation(self) -> str:
        side = "" if self.store_side is None else f", stored at {self.store_side} px"
        return f"{self.dtype}, K={'plan' if self.frames_per_video is None else self.frames_per_video}{side}"

    @property
    def key(self) -> tuple:
        return (self.method, self.dtype, self.frames_per_video, self.soft_labels, self.store_side)


def candidates(auto: AutoArguments) -> list[Candidate]:
    """Every (method, dtype, K, labels, side) in candidate order: methods as listed, then dtypes, K, labels, sides."""
    soft = [None if s == "none" else s for s in auto.soft_list]
    return [
        Candidate(m, d, k, s, side)
        for m in auto.method_list
        for d in auto.dtype_list
        for k in auto.frames_list
        for s in soft
        for side in auto.side_list
    ]


def _run_dir(work_dir: str, dtype: str, frames: int | None, side: int | None) -> str:
    name = f"{dtype}_k{'plan' if frames is None else frames}" + ("" if side is None else f"_side{side}")
    return os.path.join(work_dir, AUTO, name)


def codec_for(codec: str, side: int | None, size: int) -> str:
    """The codec spec of a candidate: `codec` itself, or `codec` applied at `side` px to `size`-px frames."""
    return codec if side is None else f"resize:{side}/{size}:{codec}"


def exact_ratio(args, auto: AutoArguments) -> str:
    """`args.ratio`, with a `k<K>` resolved to its exact percent (`25/12`) under the codec as given when other stored
    sides compete (each would read `k<K>` with its own smaller frames)."""
    if not args.ratio.startswith("k") or auto.side_list == [None]:
        return args.ratio
    from compressa_hf.codecs import load_codec
    from compressa_hf.distillation.budget import resolve_ratio

    shape = load_codec(args.codec).latent_shape(args.size, args.size)
    return str(resolve_ratio(args.ratio, args.num_frames, args.size, shape))


def check_sides(args, auto: AutoArguments) -> None:
    """`ValueError` (the resize codec's own) for a stored side `args.codec` cannot be wrapped at for `args.size`."""
    from compressa_hf.codecs import load_codec

    for side in auto.side_list:
        if side is not None:
            if args.codec == "default":
                raise ValueError("--auto_store_sides needs an explicit --codec (the sides wrap it)")
            load_codec(codec_for(args.codec, side, args.size))


def describe(auto: AutoArguments) -> str:
    """A few lines for `--dry-run`: the candidates and the validation protocol."""
    cands = candidates(auto)
    return "\n".join(
        [
            f"--method auto: {len(cands)} candidates ({', '.join(auto.method_list)} x {', '.join(auto.dtype_list)} x "
            f"K in {', '.join(auto._frames_tokens)} x labels {', '.join(auto.soft_list)} x stored side "
            f"{', '.join(auto._side_tokens)}; a method that cannot take an allocation is listed as n/a), each "
            f"distilled from {1 - auto.auto_validation_fraction:.0%} "
            f"of the split and validated on the other {auto.auto_validation_fraction:.0%} ({auto.auto_seeds} seeds, "
            f"{auto.auto_arch} of width {auto.auto_width}, {auto.auto_epochs} epochs); the test split is never read",
            "the best candidate then distils the whole split into config auto_ratio_<r>",
        ]
    )


def choose(args, auto: AutoArguments, seed: int = 0, method_config: str | None = None) -> dict:
    """Run the validation comparison for `compressa distill` arguments `args` and return the choice; `seed` seeds the
    validation carve, `method_config` is a YAML file of per-method options (`{method: {option: value}}`).

    Returns a JSON-ready dict: `chosen` (method, dtype, frames_per_video, soft_labels, validation accuracy), `table`
    (one entry per candidate, in candidate order: status, mean and std of validation accuracy, per-seed accuracies,
    rows, frames per row, stored bytes, compress seconds; or the reason it is n/a), `full_data` (the reference's
    validation accuracy) and `protocol`. Raises `ValueError` when no candidate can be run at the ratio.
    """
    from compressa_hf.distillation.methods import FIXED_K_METHODS
    from compressa_hf.distillation.soft_labels import soft_name
    from compressa_hf.evaluation.report import ratio_key
    from compressa_hf.evaluation.runner import EvaluateArguments, run

    cands = candidates(auto)
    soft_dtype = next((s for s in auto.soft_list if s != "none"), None)
    check_sides(args, auto)
    ratio = exact_ratio(args, auto)
    table: list[dict] = []
    full, report = None, None
    allocations = list(dict.fromkeys((c.dtype, c.frames_per_video, c.store_side) for c in cands))
    for dtype, frames, side in allocations:
        runnable = [c for c in cands if (c.dtype, c.frames_per_video, c.store_side) == (dtype, frames, side)]
        methods = list(dict.fromkeys(c.method for c in runnable if frames is None or c.method in FIXED_K_METHODS))
        if methods:
            logger.info("--method auto: validating %s at %s", ", ".join(methods), runnable[0].allocation)
            eval_args = EvaluateArguments(
                source=args.source,
                output=_run_dir(args.work_dir, dtype, frames, side),
                methods=",".join(methods),
                ratios=ratio,
                seeds=auto.auto_seeds,
                archs=auto.auto_arch,
                full_data=full is None,  # the reference once
                train_split=args.split,
                test_split=args.split,  # never read: the validation protocol lists the train split only
                codec=codec_for(args.codec, side, args.size),
                codec_dtype=args.codec_dtype,
                num_frames=args.num_frames,
                size=args.size,
                policy=args.policy,
                num_workers=args.num_workers,
                dtype=dtype,
                frames_per_video=frames,
                method_config=method_config,
                soft_labels=soft_dtype is not None,  # rows <method>+soft beside the hard-label ones
                soft_label_dtype=soft_dtype or "float16",
                soft_label_teacher=auto.auto_arch,
                soft_label_temperature=getattr(args, "soft_label_temperature", 1.0),
                validation_fraction=auto.auto_validation_fraction,
                validation_groups=auto.auto_validation_groups,
                fold_seed=seed,
            )
            report = run(eval_args, auto.train_config())
            rows = report["tables"][auto.auto_arch]
            if full is None:
                full = rows.get("full", {}).get("full", {})
            cells = {c["method"]: c for c in report["cells"] if c["method"] != "full"}
        for c in runnable:
            entry = {"method": c.method, "dtype": dtype, "frames_per_video": frames, "soft_labels": c.soft_labels}
            entry["store_side"] = side
            if c.method not in methods:
                table.append(entry | {"status": "n/a", "reason": f"{c.method} chooses its own frames per video"})
                continue
            row = c.method if c.soft_labels is None else soft_name(c.method)
            cell = rows.get(row, {}).get(ratio_key(report["ratios"][0]))
            if cell is None or cell["status"] != "ok":
                reason = (cell or {}).get("reason") or cells.get(row, {}).get("reason", "not run")
                table.append(entry | {"status": "n/a", "reason": reason})
                continue
            table.append(
                entry
                | {
                    "status": "ok",
                    "mean": cell["mean"],
                    "std": cell["std"],
                    "accuracies": cell["accuracies"],
                    "rows": cells[row]["rows"],
                    "frames_per_row": cells[row]["frames_per_row"],
                    "stored_bytes": int(cell["stored_bytes"]),
                    "budget_bytes": cell["budget_bytes"],
                    "compress_s": cell["compress_s"],
                }
            )
    order = {c.key: i for i, c in enumerate(cands)}
    table.sort(key=lambda e: order[tuple(e[k] for k in KEY_FIELDS)])
    ok = [e for e in table if e["status"] == "ok"]
    if not ok:
        reasons = "; ".join(f"{e['method']} ({e['dtype']}): {e.get('reason')}" for e in table)
        raise ValueError(f"--method auto: no candidate can be run at --ratio {args.ratio}: {reasons}")
    best = max(ok, key=lambda e: e["mean"])  # max keeps the first of equal means: candidate order breaks ties
    chosen = {k: best[k] for k in ("method", "dtype", "frames_per_video", "soft_labels", "store_side", "mean", "std")}
    chosen |= {"codec": codec_for(args.codec, best["store_side"], args.size), "ratio": ratio}
    logger.info(
        "--method auto chose %s (%s, %s labels): validation accuracy %.1f %%",
        best["method"],
        Candidate(**{k: best[k] for k in KEY_FIELDS}).allocation,
        best["soft_labels"] or "hard",
        100 * best["mean"],
    )
    return {
        "chosen": chosen,
        "table": table,
        "full_data": {"mean": full["mean"], "std": full["std"]} if full and full.get("status") == "ok" else None,
        "protocol": {
            "validation_fraction": auto.auto_validation_fraction,
            "groups": report["protocol"].get("groups"),
            "fold_seed": seed,
            "seeds": auto.auto_seeds,
            "arch": auto.auto_arch,
            "train": asdict(auto.train_config()),
            "held_out_clips": report["test_clips"],
            "train_clips": report["train_clips"],
        },
    }


def table_markdown(selection: dict) -> str:
    """The validation table of a choice, as markdown for the card."""
    full = selection.get("full_data")
    lines = [
        "| method | dtype | K | labels | stored side | validation accuracy % mean +- std (per seed) | rows x frames "
        "| stored bytes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in selection["table"]:
        k = "plan" if e["frames_per_video"] is None else e["frames_per_video"]
        side = "as encoded" if e.get("store_side") is None else f"{e['store_side']} px"
        head = f"| {e['method']} | {e['dtype']} | {k} | {e.get('soft_labels') or 'hard'} | {side} |"
        if e["status"] != "ok":
            lines.append(f"{head} n/a: {e.get('reason', '')[:120]} | | |")
            continue
        accs = ", ".join(f"{100 * a:.1f}" for a in e["accuracies"])
        lines.append(
            f"{head} {100 * e['mean']:.1f} +- {100 * e['std']:.1f} ({accs}) | "
            f"{e['rows']} x {round(e['frames_per_row'], 2):g} | {e['stored_bytes']:,} |"
        )
    if full:
        lines.append(f"| full data (reference) | | | | | {100 * full['mean']:.1f} +- {100 * full['std']:.1f} | | |")
    return "\n".join(lines)


def card_text(selection: dict) -> str:
    """The card's account of `compressa distill --method auto`: what was chosen, how, and the validation table."""
    c, p = selection["chosen"], selection["protocol"]
    k = "the planner's K" if c["frames_per_video"] is None else f"K = {c['frames_per_video']}"
    labels = f"{c['soft_labels']} soft labels" if c.get("soft_labels") else "hard labels"
    side = f", frames stored at {c['store_side']} px" if c.get("store_side") else ""
    return (
        f"Chosen by `compressa distill --method auto`: **{c['method']}**, {c['dtype']} latents, {k}, {labels}{side}, "
        "the best mean "
        f"accuracy on a validation split ({p['validation_fraction']:g} of the training split held out"
        f"{' in whole groups' if p.get('groups') else ''}, "
        f"{p['held_out_clips']} clips, fold seed {p['fold_seed']}; each candidate distilled from the other "
        f"{p['train_clips']} clips at this ratio, a {p['arch']} trained from scratch, {p['seeds']} seed(s)). The test "
        "split was not read. Validation accuracy chooses; it is not a test result.\n\n" + table_markdown(selection)
    )
