"""Imports point down the floors, never up, not even inside a function.

Floors, lowest first: ``robustness.core`` (ground: errors, io, threat, metrics, distributed, the
model wrapper, model and data loading, the plug-in registry, the result schema), then
``attacks``, then ``defenses`` and ``reports`` (side by side: neither imports the other), then
the roof (the rest of ``robustness``: the audit, the CLI, the zoo, watermarks). Every ``import``
statement of every module is read from its syntax tree, those inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("robustness", "attacks", "defenses", "reports")

# floor -> the floors its modules may import (its own included)
ALLOWED = {
    "core": {"core"},
    "attacks": {"core", "attacks"},
    "defenses": {"core", "attacks", "defenses"},
    "reports": {"core", "reports"},
    "roof": {"core", "attacks", "defenses", "reports", "roof"},
}


def floor_of(module: str) -> str | None:
    """The floor of a dotted module name of this project, or None for anything else.

    The bare package ``robustness`` (its version and lazy public names) counts as ground floor.
    """
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] == "robustness":
        return "core" if len(parts) == 1 or parts[1] == "core" else "roof"
    return parts[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    """Whether a dotted name is a module or package of this repository (not an attribute)."""
    base = REPO.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, inside functions too; relative imports resolved.

    ``from a import b`` counts as importing ``a``, and ``a.b`` too where ``b`` is a module.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names if is_module(f"{base}.{a.name}")]
    return found


def project_modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def test_every_import_points_down():
    wrong = []
    for path in project_modules():
        own = floor_of(module_name(path))
        for line, target in imported_modules(path):
            floor = floor_of(target)
            if floor is not None and floor not in ALLOWED[own]:
                wrong.append(f"{path.relative_to(REPO)}:{line} ({own}) imports {target} ({floor})")
    assert not wrong, "imports that point up a floor:\n" + "\n".join(wrong)


def test_the_ground_floor_exists_and_holds_the_basics():
    core = REPO / "robustness" / "core"
    for name in ("errors", "io", "threat", "metrics", "distributed", "model", "data", "registry"):
        assert (core / f"{name}.py").exists(), name


@pytest.mark.parametrize(
    "module, floor",
    [
        ("robustness.core.model", "core"),
        ("robustness.audit", "roof"),
        ("robustness", "core"),
        ("attacks.pgd", "attacks"),
        ("reports.pdf", "reports"),
        ("numpy", None),
    ],
)
def test_floor_of(module, floor):
    assert floor_of(module) == floor


def test_the_checker_sees_imports_inside_functions():
    # a module of the ground floor, as the checker reads it: a function-level import counts
    src = REPO / "robustness" / "core" / "_layering_probe.py"
    src.write_text("def f():\n    from robustness import audit\n    import defenses.trainer\n")
    try:
        found = [m for _, m in imported_modules(src)]
    finally:
        src.unlink()
    assert found == ["robustness", "robustness.audit", "defenses.trainer"]
    assert [floor_of(m) for m in found] == ["core", "roof", "defenses"]
