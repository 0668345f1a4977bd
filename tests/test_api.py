"""The Python API (`compressa_hf.api`, exposed at the package root): the README's example runs and makes the set the
CLI makes; keyword options route to their dataclasses; errors are the CLI's; every public root name is documented;
no module-level import circle; every command module is thin."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import pytest

import compressa_hf
from tests.conftest import QWEN, REPO, need_shared

SOURCE = "procedural:num_classes=3,train_per_class=4,length=16,frame_size=32"
TINY = dict(source=SOURCE, num_frames=4, size=32, codec="pixel", num_workers=0)

#: Every public name of the package root, the docstring test's list.
PUBLIC = [
    "AutoArguments", "DistillArguments", "DistillOutput", "DistilledSet", "EncodeConfig", "EncodeOutput",
    "EvaluateArguments", "EvaluateOutput", "PushOutput", "QwenVideoCollator", "TrainConfig", "VideoCompressaConfig",
    "distill", "encode", "evaluate", "load_chat_dataset", "load_distilled", "push",
]  # fmt: skip


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- python-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its Python example (marked <!-- python-example -->)"
    return match.group(1)


def _set_files(folder: Path, config: str) -> dict:
    """The set's data files' bytes, and its card record without the command that made it."""
    data = {p.name: p.read_bytes() for p in sorted((folder / "data" / config).iterdir())}
    meta = json.loads((folder / "meta" / f"{config}.json").read_text())
    meta.pop("command")
    return {"data": data, "meta": meta}


def test_the_readme_example_runs_and_makes_the_set_the_cli_makes(tmp_path, monkeypatch):
    """The README's first-screen example (encode, distill, load, one collated batch), then `compressa distill` with
    the same options: identical rows and card records."""
    need_shared(QWEN)
    from compressa_hf.cli import main as cli

    monkeypatch.chdir(tmp_path)
    code = _readme_example()
    assert len(code.strip().splitlines()) <= 12, "the first screen's example is about ten lines"
    scope: dict = {}
    exec(compile(code.replace("Qwen/Qwen2.5-VL-7B-Instruct", str(QWEN)), "README.md", "exec"), scope)  # noqa: S102
    out, batch = scope["out"], scope["batch"]
    assert out.config_name and not out.dry_run
    assert {"input_ids", "labels", "pixel_values_videos", "video_grid_thw"} <= set(batch)
    assert (batch["labels"] != -100).any()

    # The same options through the CLI.
    call = re.search(r"ch\.distill\((.*?)\)\n", code, re.S).group(1)
    options = eval(f"dict({call})", scope)  # noqa: S307 (our own README's call, with its own variables)
    argv = ["distill"] + [x for k, v in options.items() if k != "output" for x in (f"--{k}", str(v))]
    assert cli([*argv, "--output", str(tmp_path / "cli")]) == 0
    assert _set_files(tmp_path / "cli", out.config_name) == _set_files(Path(out.repo), out.config_name)


def test_options_route_to_their_dataclasses_and_unknown_ones_are_named(tmp_path):
    from compressa_hf.distillation.arguments import DistillArguments

    with pytest.raises(TypeError, match=r"unknown option\(s\) \['ratoi'\].*DistillArguments, VideoCompressaConfig"):
        compressa_hf.distill(ratoi="k1", **TINY)
    with pytest.raises(TypeError, match="did you mean 'passes' for 'pases'"):
        compressa_hf.distill(pases=1, **TINY)
    with pytest.raises(TypeError, match=r"a DistillArguments and its field\(s\) \['ratio'\]"):
        compressa_hf.distill(DistillArguments(**TINY), ratio="k1")
    with pytest.raises(TypeError, match="expected a TrainConfig"):
        compressa_hf.evaluate(train={"epochs": 1})
    plan = compressa_hf.distill(ratio="k1", dry_run=True, passes=2, output=str(tmp_path / "o"), **TINY)
    assert plan.dry_run and plan.repo is None and "method: videocompressa" in plan.plan_text
    assert plan.config_name == "ratio_k1"  # what a run would write
    assert plan.summary["method_options"]["passes"] == 2  # a VideoCompressaConfig field, routed


def test_errors_are_the_clis(tmp_path, capsys):
    """A user's mistake raises what `compressa distill` reports in its one-paragraph message."""
    from compressa_hf.cli import main as cli

    with pytest.raises(ValueError) as api_error:
        compressa_hf.distill(ratio="12x", output=str(tmp_path / "o"), **TINY)
    argv = ["distill", "--ratio", "12x", "--output", str(tmp_path / "o")]
    argv += [x for k, v in TINY.items() for x in (f"--{k}", str(v))]
    assert cli(argv) == 2
    assert str(api_error.value).split("\n")[0] in capsys.readouterr().err.replace("\n", " ")


def test_distill_load_and_evaluate_return_typed_results(tmp_path):
    enc = compressa_hf.encode(**{k: v for k, v in TINY.items()}, output_dir=str(tmp_path / "cache"))
    assert enc.clips_cached == 12 and enc.clips_skipped == 0 and Path(enc.output_dir).is_dir()
    out = compressa_hf.distill(ratio="k1", method="uniform", output=str(tmp_path / "set"), **TINY)
    assert (out.config_name, out.method, out.plan["frames_per_video"]) == ("uniform_ratio_k1", "uniform", 1)
    kept = out.load()
    assert isinstance(kept, compressa_hf.DistilledSet) and len(kept.rows) == kept.meta["num_videos"] == 12
    assert "uniform_ratio_k1" in kept.card and kept.meta["method"] == "uniform"
    with pytest.raises(ValueError, match="has no config 'nope'"):
        compressa_hf.load_distilled(out.repo, "nope")
    for typo in (str(tmp_path / "sett"), "./sett", f"{tmp_path}/set/x/y"):  # a path, never sent to the Hub
        with pytest.raises(FileNotFoundError, match="no such folder"):
            compressa_hf.load_distilled(typo)
    report = compressa_hf.evaluate(
        methods="uniform", ratios="k1", seeds=1, epochs=1, width=8, full_data=False, output=str(tmp_path / "e"),
        **{k: v for k, v in TINY.items() if k != "num_workers"},
    )  # fmt: skip
    assert (
        report.tables["convnet"]["uniform"][report.ratio_keys["k1"]]["status"] == "ok" and "uniform" in report.markdown
    )
    dry = compressa_hf.push(out.repo, "user/set", dry_run=True)
    assert dry.url is None and "README.md" in dry.files and dry.bytes > 0
    with pytest.raises(ValueError, match="'not a valid id!!' is not a Hub dataset id"):  # a dry run checks it too
        compressa_hf.push(out.repo, "not a valid id!!", dry_run=True)


def test_every_public_root_name_is_documented():
    """The list is the package root's whole public surface; each name says what it takes, gives and raises."""
    assert sorted(compressa_hf.__all__) == sorted(PUBLIC) == sorted(compressa_hf._PUBLIC)
    for name in PUBLIC:
        obj = getattr(compressa_hf, name)
        doc = inspect.getdoc(obj) or ""
        assert len(doc) > 80, f"{name} has no real docstring"
        if inspect.isfunction(obj):
            assert "Raises" in doc and ("Returns" in doc or "->" in str(inspect.signature(obj))), name
        elif inspect.isclass(obj):
            assert "Args:" in doc or "Attributes:" in doc, f"{name}: its fields are not documented"
    assert dir(compressa_hf) == sorted([*PUBLIC, "__version__"])
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        compressa_hf.nope  # noqa: B018


def _module_imports(path: Path, package_root: Path) -> set[str]:
    """The compressa_hf modules a module imports when it is imported (module level, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    name = ".".join(path.relative_to(package_root.parent).with_suffix("").parts).removesuffix(".__init__")
    found: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                visit(getattr(node, "finalbody", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".")
                    keep = len(parts) - node.level + (1 if path.name == "__init__.py" else 0)
                    base = ".".join(parts[:keep] + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)

    visit(tree.body)
    return {m for m in found if m.startswith("compressa_hf")}


def test_no_module_level_import_circle():
    root = REPO / "compressa_hf"
    modules = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for target in _module_imports(path, root):
            while target and target not in modules:  # `from a.b import name`: the module a.b
                target = target.rpartition(".")[0]
            parts = target.split(".")
            targets.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # importing runs each parent too
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    # Tarjan's strongly connected components: any with two or more modules is a circle.
    index, low, stack, on, circles = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    assert not circles, f"module-level import circles: {circles}"


def test_command_modules_are_thin():
    """A command parses, calls the library and prints; the pipeline lives in the library."""
    long = {
        p.name: n
        for p in (REPO / "compressa_hf" / "commands").glob("*.py")
        if (n := len(p.read_text().splitlines())) > 150
    }
    assert not long, f"command modules over 150 lines: {long}"


def test_moved_packages_still_import_with_a_warning():
    """`compressa_hf.distill.*` / `compressa_hf.evaluate.*` (now `distillation` / `evaluation`) import for one release,
    as the very modules at the new paths, warning at the importing line; the root's functions keep their names."""
    import importlib
    import subprocess
    import sys

    code = (
        "import warnings; warnings.simplefilter('always')\n"
        "from compressa_hf.distill.methods import METHODS as old\n"
        "from compressa_hf.evaluate.stats import paired_bootstrap as old_stats\n"
        "import compressa_hf\n"
        "from compressa_hf.distillation.methods import METHODS\n"
        "from compressa_hf.evaluation.stats import paired_bootstrap\n"
        "assert old is METHODS and old_stats is paired_bootstrap\n"
        "assert callable(compressa_hf.distill) and callable(compressa_hf.evaluate)\n"
        "import compressa_hf.distill.budget as budget\n"  # the forms Python resolves through the root's attribute
        "import compressa_hf.evaluate.report\n"
        "from compressa_hf.distillation import budget as new_budget\n"
        "assert budget is new_budget and compressa_hf.evaluate.report.ratio_key(1.0) == '1'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "<string>:2: DeprecationWarning: `compressa_hf.distill.methods` is deprecated" in run.stderr
    assert "import from `compressa_hf.distillation.methods` instead" in run.stderr
    assert "<string>:3: DeprecationWarning: `compressa_hf.evaluate.stats` is deprecated" in run.stderr
    assert importlib.import_module("compressa_hf.evaluation.stats").__spec__.name == "compressa_hf.evaluation.stats"
