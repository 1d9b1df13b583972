"""No module reads another class's private state: ``x._name`` goes through a public accessor instead.

A read (or write) of ``x._name`` (not a dunder), or ``getattr(x, "_name")``, is a reach-in unless ``x``
is ``self``, ``cls`` or ``super()``, or the module itself defines ``_name`` (a class body's name or a
``self._name = ...``): a class may read its own kind's privates. The rest must be in ``ALLOWED``, each
with the reason no public route exists; an entry is an ``fnmatch`` pattern over ``<x>._name`` as written.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatchcase
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: ``<object>._name`` pattern -> why the private read stays
ALLOWED: dict[str, str] = {
    "torch._foreach_*": "PyTorch's multi-tensor ops (what torch.optim runs on): one fused call over all "
    "prunable layers; no public equivalent",
    "nn.init._calculate_correct_fan": "the fan-in exactly as torch's own init computes it, as HYDRA's "
    "reference score initialisation does",
    "module._conv_forward": "nn.Conv2d's forward with a substituted weight, keeping the module's padding "
    "and padding_mode; F.conv2d would repeat that logic",
    "argparse._SubParsersAction": "the type of add_subparsers()'s result, in annotations only; argparse "
    "has no public name for it",
    "argparse.ArgumentParser()._registries": "reaches argparse's identity function, the one function Tune's "
    "pickled state ships by value, to know its code exactly",
    "cloudpickle._code_reduce": "the fields cloudpickle writes for a code object, compared with the ones "
    "in Tune's pickled state",
    "result_grid._experiment_analysis": "Ray's public ResultGrid has no trial id for a trial that failed "
    "before reporting and no per-trial status (see sweep/outcome.py)",
}


def own_private_names(tree: ast.AST) -> set[str]:
    """Private names the module defines: in a class body, or assigned as ``self._x``/``cls._x``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    names.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return {n for n in names if n.startswith("_")}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_own(value: ast.expr) -> bool:
    if isinstance(value, ast.Name):
        return value.id in ("self", "cls")
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super"


def private_reads(path: Path) -> list[tuple[int, str]]:
    """``(line, "<object>._name")`` for every reach-in of the module at ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = own_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            value, name = node.value, node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            value, name = node.args[0], node.args[1].value
        else:
            continue
        if _is_private(name) and not _is_own(value) and name not in own:
            found.append((node.lineno, f"{ast.unparse(value)}.{name}"))
    return sorted(found)


def reach_ins(root: Path, package: str, allowed: dict[str, str]) -> tuple[list[str], set[str]]:
    """The reach-ins ``allowed`` does not cover, as ``file:line: expr`` lines, and the patterns used."""
    problems, used = [], set()
    for path in sorted((root / package).rglob("*.py")):
        for line, expr in private_reads(path):
            matched = [p for p in allowed if fnmatchcase(expr, p)]
            used.update(matched)
            if not matched:
                problems.append(f"{path.relative_to(root)}:{line}: {expr}")
    return problems, used


def test_no_module_reads_another_class_private_attribute():
    problems, _ = reach_ins(REPO, "dnr_sweep", ALLOWED)
    assert problems == [], "use (or add) a public accessor; or add the read to ALLOWED with the reason"


def test_every_allowed_read_still_occurs():
    _, used = reach_ins(REPO, "dnr_sweep", ALLOWED)
    assert set(ALLOWED) - used == set()


def test_the_check_catches_reads_writes_and_getattr(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "own.py").write_text(
        "class A:\n"
        "    _shared = 0\n"
        "    def __init__(self):\n"
        "        self._x = 1\n"
        "        super()._setup()\n"
        "    def same(self, other):\n"
        "        return other._x + other._shared + other.__class__.__name__.__len__()\n"
    )
    (package / "user.py").write_text(
        "def f(a, torch):\n"
        "    a._x\n"
        "    a.masking._weights = []\n"
        "    getattr(a, '_y', None)\n"
        "    return torch._foreach_mul\n"
    )
    problems, used = reach_ins(tmp_path, "pkg", {"torch._foreach_*": "fused ops", "unused.*": "never"})
    assert problems == ["pkg/user.py:2: a._x", "pkg/user.py:3: a.masking._weights", "pkg/user.py:4: a._y"]
    assert used == {"torch._foreach_*"}
