"""Every code reference in the docs names something that exists: ``dnr_sweep/x.py`` is a file, and
``dnr_sweep/x.py:name`` or ``:Class.method`` a definition in it (a function, class, method or
module-level name). The reading order in docs/ARCHITECTURE.md holds as the code changes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
REFERENCE = re.compile(r"\b((?:dnr_sweep|tests|benchmarks|scripts)/[\w/]+\.py)(?::([A-Za-z_][\w.]*\w))?")


def defined_names(tree: ast.AST) -> dict[str, ast.AST]:
    """Dotted names defined in a module: top-level functions, classes and assignments, and the
    functions, classes and annotated or assigned attributes inside classes, recursively."""
    names: dict[str, ast.AST] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names[prefix + node.name] = node
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        names[prefix + target.id] = node
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names[prefix + node.target.id] = node

    visit(tree.body, "")
    return names


def references() -> list[tuple[str, str, str | None]]:
    found = []
    for doc in DOCS:
        for path, name in REFERENCE.findall(doc.read_text()):
            found.append((doc.relative_to(REPO).as_posix(), path, name or None))
    return sorted(set(found), key=lambda r: (r[0], r[1], r[2] or ""))


def test_the_docs_reference_code_at_all():
    assert sum(doc == "docs/ARCHITECTURE.md" for doc, _, _ in references()) > 50


@pytest.mark.parametrize(("doc", "path", "name"), references(), ids=lambda v: str(v))
def test_every_code_reference_in_the_docs_exists(doc, path, name):
    file = REPO / path
    assert file.is_file(), f"{doc} names {path}, which does not exist"
    if name is not None:
        assert name in defined_names(ast.parse(file.read_text())), f"{doc} names {path}:{name}, not defined there"


def package_classes() -> dict[str, list[ast.ClassDef]]:
    classes: dict[str, list[ast.ClassDef]] = {}
    for file in (REPO / "dnr_sweep").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, []).append(node)
    return classes


def members(cls: ast.ClassDef, classes: dict[str, list[ast.ClassDef]]) -> set[str]:
    """What a class defines, with what its bases among the package's classes define."""
    names = set(defined_names(ast.Module(body=cls.body, type_ignores=[])))
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            names |= {name for parent in classes[base.id] for name in members(parent, classes)}
    return names


def test_every_class_member_the_docs_name_exists():
    """A bare ```Class.member``` in the docs (e.g. ```Masking.step```) names a member of that class."""
    classes = package_classes()
    missing = []
    for doc in DOCS:
        for cls_name, member in re.findall(r"`([A-Z]\w+)\.([a-z_]\w*)[`(]", doc.read_text()):
            if cls_name in classes and not any(member in members(c, classes) for c in classes[cls_name]):
                missing.append(f"{doc.relative_to(REPO)}: {cls_name}.{member}")
    assert not missing, missing
