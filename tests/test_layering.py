"""The import rules the package docstrings state, checked on every module's source (the guard, instead of
comments): ``runtimes`` imports neither ``exporter`` nor ``serving`` (but attn-bench's one lazy export),
``serving`` never imports ``exporter``, ``exporter`` never imports ``serving`` (but ``--triton-repo``'s lazy
call), the leaves of ``exporter`` (sources, formats, checks, training) import none of its pipeline modules,
and no ``runtimes`` module imports torch or TensorRT when it is imported.

A module-level import counts as "at import time"; one inside a function is lazy.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("exporter", "runtimes", "serving")
PIPELINE_MODULES = ("exporter.cli", "exporter.pipeline", "exporter.stages", "exporter.context", "exporter.options")
LEAF_PACKAGES = ("exporter.sources", "exporter.formats", "exporter.checks", "exporter.training")
# (importer, imported package) pairs allowed as lazy imports only, each the one exception its docstring names
LAZY_EXCEPTIONS = {("runtimes.bench.cli", "exporter"), ("exporter.cli", "serving")}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    lazy: bool  # inside a function: runs when called, not when the importer is imported
    line: int

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.imported}{' (lazily)' if self.lazy else ''}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, importer: str, is_package: bool) -> list[Edge]:
    """Every import statement of ``source`` as an absolute module name, with whether it runs lazily."""
    package = importer if is_package else importer.rpartition(".")[0]
    edges: list[Edge] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                edges.extend(Edge(importer, alias.name, lazy, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                edges.append(Edge(importer, base, lazy, child.lineno))
                edges.extend(Edge(importer, f"{base}.{alias.name}", lazy, child.lineno) for alias in child.names)
            visit(child, inner)

    visit(ast.parse(source), False)
    return edges


def project_edges() -> list[Edge]:
    edges: list[Edge] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            edges.extend(imports_of(path.read_text(), module_name(path), path.name == "__init__.py"))
    return edges


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(edges: list[Edge]) -> list[str]:
    """The edges that break a rule, each with the rule it breaks."""
    found: list[str] = []
    for edge in edges:
        source, target = edge.importer, edge.imported
        for layer, forbidden in (("runtimes", "exporter"), ("runtimes", "serving"), ("serving", "exporter"),
                                 ("exporter", "serving")):
            if within(source, layer) and within(target, forbidden):
                if not (edge.lazy and (source, forbidden) in LAZY_EXCEPTIONS):
                    found.append(f"{edge}: {layer} must not import {forbidden}")
        if any(within(source, leaf) for leaf in LEAF_PACKAGES) and any(within(target, m) for m in PIPELINE_MODULES):
            found.append(f"{edge}: sources, formats, checks and training must not import the pipeline modules")
        if within(source, "runtimes") and not edge.lazy and target.split(".")[0] in ("torch", "tensorrt"):
            found.append(f"{edge}: runtimes must not import {target.split('.')[0]} at import time")
    return found


def test_the_project_keeps_its_import_rules() -> None:
    edges = project_edges()
    assert len({e.importer for e in edges}) > 60  # every module was read, not an empty tree
    assert violations(edges) == []


@pytest.mark.parametrize("importer, line, rule", [
    ("runtimes.selection", "import exporter.pipeline", "runtimes must not import exporter"),
    ("runtimes.engines.ort_rt", "from serving import server", "runtimes must not import serving"),
    ("serving.server", "from exporter.formats import fp16", "serving must not import exporter"),
    ("exporter.stages", "from serving.triton_repo import write_repository", "exporter must not import serving"),
    ("exporter.formats.fp16", "from exporter.context import ExportContext", "must not import the pipeline modules"),
    ("exporter.checks.parity", "from ..stages import STAGES", "must not import the pipeline modules"),
    ("runtimes.bench.timing", "import torch", "runtimes must not import torch at import time"),
    ("runtimes.bench.ceiling", "def f():\n    from exporter.pipeline import export", "runtimes must not import exporter"),
])
def test_a_wrong_import_is_caught(importer: str, line: str, rule: str) -> None:
    """Each rule fails on a deliberately wrong import (the lazy exception is the named module's alone)."""
    edges = imports_of(line + "\n", importer, is_package=False)
    assert any(rule in v for v in violations(edges)), violations(edges)


def test_the_named_lazy_exceptions_are_allowed_only_lazily() -> None:
    lazy = imports_of("def f():\n    from exporter.pipeline import export\n", "runtimes.bench.cli", False)
    eager = imports_of("from exporter.pipeline import export\n", "runtimes.bench.cli", False)
    assert violations(lazy) == []
    assert len(violations(eager)) == 2  # the module and the imported name


def test_every_runtimes_module_imports_without_torch_or_tensorrt() -> None:
    """Edge apps install numpy and one engine: import every runtimes module with torch and TensorRT blocked."""
    modules = sorted(module_name(p) for p in (ROOT / "runtimes").rglob("*.py"))
    code = ("import importlib, sys\n"
            "sys.modules['torch'] = None; sys.modules['tensorrt'] = None  # any import of them raises\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(len(sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(modules) > 25


PATH_SUFFIXES = (".py", ".md", ".toml", ".txt", ".sh")
IDENTIFIER = re.compile(r"^[A-Za-z_][\w.]*$")


def is_path(token: str) -> bool:
    return "/" in token or token.endswith(PATH_SUFFIXES)


def test_contributing_recipes_name_files_that_exist() -> None:
    """Every path CONTRIBUTING.md names exists (``NAME`` marks a file a recipe creates), and in a recipe's
    line each name it gives (a table, a class, a function) is in one of the files that line names."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    tokens = re.findall(r"`([^`]+)`", text)
    paths = [t for t in tokens if is_path(t) and "NAME" not in t and " " not in t]
    missing = [p for p in paths if not (ROOT / p.rstrip("/")).exists()]
    assert len(paths) > 25 and missing == []
    items = re.split(r"\n(?=- )|\n\n", text)
    checked = 0
    for item in (i for i in items if i.startswith("- `")):
        names = re.findall(r"`([^`]+)`", item)
        files = [ROOT / n for n in names if is_path(n) and "NAME" not in n and (ROOT / n).is_file()]
        sources = "".join(f.read_text() for f in files)
        for name in (n for n in names if not is_path(n) and IDENTIFIER.match(n)):
            assert name in sources, f"CONTRIBUTING.md: {name!r} is not in {[str(f.relative_to(ROOT)) for f in files]}"
            checked += 1
    assert checked > 30


def test_docs_name_paths_that_exist() -> None:
    """A file or folder the README, CONTRIBUTING.md or a docs page names in backticks exists (a move that
    forgets a page fails here)."""
    pattern = re.compile(r"`((?:exporter|runtimes|serving|scripts|tests|docs|examples)/[\w/.\-]+)`")
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = [(page.name, m.group(1)) for page in pages for m in pattern.finditer(page.read_text())]
    missing = [(page, path) for page, path in named if "NAME" not in path and not (ROOT / path.rstrip("/")).exists()]
    assert len(named) > 60 and missing == []
