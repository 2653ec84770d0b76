"""The package keeps one layer order and small modules: a layer imports only itself and the layers
before it (function-level imports included), and no module is longer than 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "napo_lab"

# First match wins: module name prefixes -> layer, lowest first.
LAYERS = [
    ("base", ["napo_lab", "napo_lab.errors", "napo_lab.cache", "napo_lab.rundir", "napo_lab.progress",
              "napo_lab.quiet"]),
    ("config", ["napo_lab.config"]),
    ("metrics", ["napo_lab.metrics"]),
    ("shapley", ["napo_lab.shapley"]),
    ("data", ["napo_lab.data"]),
    ("models", ["napo_lab.models"]),
    ("losses", ["napo_lab.losses"]),
    ("lit", ["napo_lab.lit"]),
    ("eval", ["napo_lab.eval"]),
    ("recipe", ["napo_lab.recipe"]),
    ("cli", ["napo_lab.run", "napo_lab.evaluate", "napo_lab.prepare", "napo_lab.resume", "napo_lab.report",
             "napo_lab.report_negatives", "napo_lab.plots", "napo_lab.curve", "napo_lab.comparisons", "napo_lab.sweep",
             "napo_lab.recommend", "napo_lab.cli"]),
]
ORDER = [name for name, _ in LAYERS]


def layer(module: str) -> str:
    best = None
    for name, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (name, p)
    if best is None:
        raise AssertionError(f"{module} is in no layer; add it to LAYERS")
    return best[0]


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.append(base)
            found += [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in KNOWN]
    return [m for m in found if m == "napo_lab" or m.startswith("napo_lab.")]


KNOWN = {name for name, _ in modules()}


@pytest.mark.parametrize("module, path", modules(), ids=[m for m, _ in modules()])
def test_imports_follow_the_layer_order(module, path):
    here = ORDER.index(layer(module))
    for imported in imports(path, module):
        there = ORDER.index(layer(imported))
        assert there <= here, (f"{module} ({ORDER[here]}) imports {imported} ({ORDER[there]}): "
                               f"the layer order is {' -> '.join(ORDER)}")


@pytest.mark.parametrize("module, path", modules(), ids=[m for m, _ in modules()])
def test_no_module_over_400_lines(module, path):
    n = len(path.read_text().splitlines())
    assert n <= 400, f"{module} has {n} lines; split it"


def test_the_recipe_reads_in_a_few_minutes():
    lines = (PACKAGE / "recipe" / "recipe.py").read_text().splitlines()
    assert len(lines) <= 160
