"""The package's shape (docs/architecture.md), read from the source without importing it: layer packages, no
import circle, no arrow up a layer, pure logic without Ray, one stage list. Fast: the AST only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "syncse_ray"

# lower layers first; a module may import its own layer and the layers below it, never one above
LAYERS = {
    "core": 0,  # errors.py, io.py, hardware.py (and the package itself: __version__)
    "config": 1, "runtime": 1, "data": 1, "models": 1,
    "synth": 2, "train": 2, "eval": 2, "serve": 2,
    "pipeline": 3,
    "cli": 4,
}
# known arrows up a layer, each with its reason; a new one fails (none today)
UPWARD_ALLOWED: set[tuple[str, str]] = set()
# modules that import Ray (at the top or inside a function): the edges of the package
RAY_MODULES = {
    "syncse_ray.runtime.ray_env", "syncse_ray.synth.pipeline", "syncse_ray.synth.next_round",
    "syncse_ray.train.trainer", "syncse_ray.train.loop", "syncse_ray.serve.app",
}
MAX_LOOSE = 4


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path) -> dict[str, int]:
    """syncse_ray modules `name` imports (anywhere in it, lazy imports included) -> a line that does."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            if target in MODULES and target != name:
                found.setdefault(target, node.lineno)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 and parts[1] in LAYERS else LAYERS["core"]


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert _cycles() == []


def test_at_most_four_modules_loose_at_the_top():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= MAX_LOOSE, loose


def test_every_package_is_a_layer():
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert set(packages) <= set(LAYERS), packages


def test_no_arrow_up_a_layer():
    upward = sorted((m, t) for m, targets in GRAPH.items() for t in targets if _layer(t) > _layer(m))
    assert set(upward) - UPWARD_ALLOWED == set(), [f"{m} -> {t}" for m, t in upward if (m, t) not in UPWARD_ALLOWED]


def _imports_ray(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        if any(n == "ray" or n.startswith("ray.") for n in names):
            return True
    return False


def test_pure_logic_imports_no_ray():
    """Only the modules at the edges (RAY_MODULES) import Ray, even lazily; everything else is unit-tested
    without a cluster."""
    with_ray = {name for name, path in MODULES.items() if _imports_ray(path)}
    assert with_ray <= RAY_MODULES, sorted(with_ray - RAY_MODULES)


def test_one_stage_list_serves_pipeline_jobs_and_cli():
    defined_in = [name for name, path in MODULES.items() for line in path.read_text().splitlines()
                  if re.match(r"\s*(STAGES|STAGE_RUNNERS)\s*[:=]", line)]
    assert defined_in == ["syncse_ray.pipeline.stages"]
    from syncse_ray.pipeline.stages import STAGES

    assert list(STAGES) == ["synth", "train", "eval", "index"]
    for user in ("syncse_ray.pipeline.run", "syncse_ray.pipeline.rounds", "syncse_ray.cli.jobs"):
        assert "syncse_ray.pipeline.stages" in GRAPH[user], user
    for stage in STAGES:
        assert (PACKAGE.parent / "jobs" / f"{stage}.py").is_file(), stage
    from syncse_ray.cli import app

    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert set(STAGES) <= commands, sorted(set(STAGES) - commands)


def _dataclass_fields(module: str, cls: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}


def test_every_stage_result_has_skipped():
    """Each stage's `run_<stage>(cfg, progress=None)` returns a result with `skipped` (read from the source:
    synth and train import Ray when they run)."""
    for module, cls in (("syncse_ray.synth.pipeline", "SynthResult"), ("syncse_ray.synth.next_round", "SelectResult"),
                        ("syncse_ray.train.trainer", "TrainResult"), ("syncse_ray.eval.stage", "EvalStageResult"),
                        ("syncse_ray.serve.index_stage", "IndexResult")):
        assert "skipped" in _dataclass_fields(module, cls), cls
    runs = {"syncse_ray.synth.pipeline": "run_synth", "syncse_ray.train.trainer": "run_train",
            "syncse_ray.eval.stage": "run_eval_stage", "syncse_ray.serve.index_stage": "run_index"}
    for module, fn in runs.items():
        node = next(n for n in ast.parse(MODULES[module].read_text()).body
                    if isinstance(n, ast.FunctionDef) and n.name == fn)
        assert [a.arg for a in node.args.args] == ["cfg", "progress"], fn
        assert node.args.defaults and isinstance(node.args.defaults[-1], ast.Constant), fn


def test_the_score_cache_key_reads_modules_that_exist():
    """The score cache keys on the source of the scoring modules; one that moved would drop out of the key
    without an error (`code_fingerprint` reads a missing file as empty)."""
    from syncse_ray.eval.score_cache import SCORING_MODULES

    assert [m for m in SCORING_MODULES if not (PACKAGE / m).is_file()] == []
