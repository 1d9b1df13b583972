"""The package's floors: imports only point down, so the folders show the architecture.

``LAYERS`` lists the subpackages of ``dnr_sweep`` from the bottom floor up; the names on one floor are
independent of each other (neither imports the other). A module may import its own subpackage, any
lower floor, the standard library and third-party packages, never a higher floor or a sibling on its
own floor. Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: bottom floor first; a tuple is one floor of independent subpackages
LAYERS: list[tuple[str, ...]] = [
    ("foundation",),  # run contract, errors, files, storage, locks, safe YAML, attack names, HTTP client
    ("attacks", "data", "models", "sparsity"),  # the paper's pieces, each on its own
    ("config",),  # the typed YAML schema (reads dataset facts and attack names)
    ("methods",),  # training methods: DNR and the baselines (ADMM, L1 Lasso, HYDRA), each one module
    ("reports", "artifacts"),  # results files -> figures (no torch); model and checkpoint files
    ("evaluation", "export"),  # attacks on a trained model; physical shrinking
    ("training",),  # one run, epoch by epoch
    ("sweep",),  # Ray Tune
    ("cli",),  # the command line ties them together
]


def floor_of(subpackage: str, layers: list[tuple[str, ...]]) -> int | None:
    for index, floor in enumerate(layers):
        if subpackage in floor:
            return index
    return None


def imported_subpackages(path: Path, package: str) -> list[tuple[int, str]]:
    """``(line, subpackage)`` for every import of ``package.<subpackage>`` in the file at ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != package else [f"{package}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == package and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def upward_imports(root: Path, package: str, layers: list[tuple[str, ...]]) -> list[str]:
    """Every import in ``root/package`` that points up or sideways, as ``file:line: a -> b`` lines.

    Also lists a subpackage missing from ``layers``, so a new folder must be given its floor.
    """
    problems = []
    base = root / package
    for path in sorted(base.rglob("*.py")):
        relative = path.relative_to(base)
        if len(relative.parts) == 1:
            continue  # the package's own __init__
        source = relative.parts[0]
        source_floor = floor_of(source, layers)
        if source_floor is None:
            message = f"{package}/{source}: subpackage {source!r} has no floor in LAYERS"
            if message not in problems:
                problems.append(message)
            continue
        for line, target in imported_subpackages(path, package):
            if target == source or not (base / target).is_dir():
                continue
            target_floor = floor_of(target, layers)
            if target_floor is None or target_floor >= source_floor:
                problems.append(f"{path.relative_to(root)}:{line}: {source} -> {target}")
    return problems


def test_imports_only_point_down():
    assert upward_imports(REPO, "dnr_sweep", LAYERS) == []


def test_every_subpackage_has_a_floor():
    folders = {p.name for p in (REPO / "dnr_sweep").iterdir() if (p / "__init__.py").is_file()}
    assert folders == {name for floor in LAYERS for name in floor}


def test_the_check_catches_upward_sideways_and_lazy_imports(tmp_path):
    package = tmp_path / "pkg"
    for sub in ("low", "mid", "side", "high", "stray"):
        (package / sub).mkdir(parents=True)
        (package / sub / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "low" / "a.py").write_text("from pkg.high import thing\n")  # upward
    (package / "mid" / "b.py").write_text("import pkg.low.a\nfrom pkg import low\n")  # downward: fine
    (package / "side" / "c.py").write_text("def f():\n    from pkg.mid import b\n")  # sideways, lazily
    (package / "high" / "d.py").write_text("from pkg import mid, side\nfrom pkg.high import d\n")  # fine
    (package / "stray" / "e.py").write_text("")
    layers = [("low",), ("mid", "side"), ("high",)]
    assert upward_imports(tmp_path, "pkg", layers) == [
        "pkg/low/a.py:1: low -> high",
        "pkg/side/c.py:2: side -> mid",
        "pkg/stray: subpackage 'stray' has no floor in LAYERS",
    ]
