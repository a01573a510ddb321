"""House rules that can be checked mechanically: layer imports and no side effects in algorithms."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "softtoken"
# A layer may import only from layers listed after it (DESIGN.md).
LAYERS = ["cli", "experiments", "latent", "methods", "engine", "objectives", "relax", "lm", "data", "metrics"]
ALGORITHM_DIRS = ["methods", "engine", "objectives", "relax"]


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "softtoken" or len(parts) < 2:
        return None
    head = parts[1]
    if head in ("cli", "cli_experiments", "api"):
        return "cli"
    return head if head in LAYERS else None


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def python_files(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py"))


@pytest.mark.parametrize("layer", [layer for layer in LAYERS if layer != "cli"])
def test_layers_import_only_from_layers_below(layer):
    allowed = set(LAYERS[LAYERS.index(layer):])
    if layer == "latent":
        allowed |= {"experiments"}
    if layer == "data":
        allowed |= {"lm"}  # generating target sets drives a model (greedy decoding, rank-k sampling)
    for path in python_files(layer):
        for module in imported_modules(path):
            target = layer_of(module)
            assert target is None or target in allowed, f"{path.name} ({layer}) imports {module}"


def test_algorithms_have_no_print_or_file_writes():
    for sub in ALGORITHM_DIRS:
        for path in python_files(sub):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id not in ("print", "open"), f"{path}: {node.func.id}()"


def test_methods_never_import_each_other():
    shared = {"__init__", "base", "harness", "presets", "diagnostics", "monitoring", "starts", "curriculum", "candidates"}  # helpers
    method_files = {p.stem for p in python_files("methods")} - shared
    composites = {"hybrid"}  # run other methods by design; no method imports them
    for path in python_files("methods"):
        if path.stem not in method_files - composites:
            continue
        for module in imported_modules(path):
            other = module.split(".")[-1]
            assert not (module.startswith("softtoken.methods.") and other in method_files - {path.stem}), (
                f"{path.name} imports {module}")
