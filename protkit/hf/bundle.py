"""One self-contained Python file from a protkit module and the protkit code it uses.

A Hugging Face export must load where protkit is not installed, yet the model's math has one home,
protkit's own modules. :func:`bundle` reads a module (the Hugging Face classes of a model), finds the
protkit names it imports, and writes their definitions (classes, functions, constants), and in turn
the protkit names those use, into one file: the other imports (torch, transformers, the standard
library) stay imports. The result is the model's ``modeling_*.py``: the same code, so the same numbers.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass, field
from types import ModuleType

PACKAGE = "protkit"


@dataclass
class _Source:
    """What one module offers a bundle: its top-level definitions and its imports, by name."""

    module: ModuleType
    definitions: dict[str, ast.stmt] = field(default_factory=dict)  # name -> the statement defining it
    imports: dict[str, str] = field(default_factory=dict)  # name -> the import line that binds it
    protkit_imports: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (module, original name)
    text: str = ""


def read_source(module: ModuleType) -> _Source:
    text = open(module.__file__, encoding="utf-8").read()
    source = _Source(module, text=text)
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            source.definitions[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        source.definitions[name.id] = node
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            for alias in node.names:
                source.protkit_imports[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "module", None) != "__future__":
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                source.imports[bound] = _import_line(node, alias)
    return source


def _import_line(node: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    as_text = f" as {alias.asname}" if alias.asname else ""
    if isinstance(node, ast.Import):
        return f"import {alias.name}{as_text}"
    return f"from {'.' * node.level}{node.module or ''} import {alias.name}{as_text}"


def used_names(node: ast.AST) -> set[str]:
    """Names a statement reads, annotations left out (``from __future__ import annotations``)."""
    names: set[str] = set()

    def visit(item: ast.AST) -> None:
        if isinstance(item, ast.arg):
            return  # an argument's annotation is a string at run time
        if isinstance(item, ast.AnnAssign):
            if item.value is not None:
                visit(item.value)
            return
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for child in (*item.decorator_list, *item.args.defaults, *item.args.kw_defaults, *item.body):
                if child is not None:
                    visit(child)
            return
        if isinstance(item, ast.Name):
            names.add(item.id)
        for child in ast.iter_child_nodes(item):
            visit(child)

    visit(node)
    return names


class _Bundle:
    """The definitions a bundle needs, in an order where each comes after what it uses."""

    def __init__(self) -> None:
        self.sources: dict[str, _Source] = {}
        self.ordered: list[tuple[str, ast.stmt]] = []  # (module name, statement)
        self.seen: set[tuple[str, int]] = set()
        self.imports: dict[str, None] = {}

    def source(self, module_name: str) -> _Source:
        if module_name not in self.sources:
            self.sources[module_name] = read_source(importlib.import_module(module_name))
        return self.sources[module_name]

    def need(self, module_name: str, name: str) -> None:
        """Add the definition of ``name`` in ``module_name`` and what it uses, first."""
        source = self.source(module_name)
        if name in source.protkit_imports:
            self.need(*source.protkit_imports[name])
            return
        if name in source.imports:
            self.imports[source.imports[name]] = None
            return
        statement = source.definitions.get(name)
        if statement is None or (module_name, statement.lineno) in self.seen:
            return  # a builtin, or already in the bundle
        self.seen.add((module_name, statement.lineno))
        for used in sorted(used_names(statement) - {name}):
            self.need(module_name, used)
        self.ordered.append((module_name, statement))


def bundle(module_name: str) -> str:
    """The text of a self-contained module: ``module_name``'s code with the protkit code it uses."""
    parts = _Bundle()
    top = parts.source(module_name)
    tree = ast.parse(top.text)
    for name in top.protkit_imports:
        parts.need(module_name, name)
    body = [node for node in tree.body if not _is_protkit_import(node) and not _is_docstring(node, tree)
            and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")]
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                parts.imports[_import_line(node, alias)] = None
    docstring = ast.get_docstring(tree) or ""
    chunks = [f'"""{docstring}\n\nGenerated by protkit.hf.bundle from protkit\'s own modules; do not edit."""',
              "from __future__ import annotations", "\n".join(parts.imports)]
    chunks += [_segment(parts.source(name).text, statement) for name, statement in parts.ordered]
    chunks += [_segment(top.text, node) for node in body if not isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n\n\n".join(chunks) + "\n"


def _is_protkit_import(node: ast.stmt) -> bool:
    return isinstance(node, ast.ImportFrom) and bool(node.module) and node.module.split(".")[0] == PACKAGE


def _is_docstring(node: ast.stmt, tree: ast.Module) -> bool:
    return node is tree.body[0] and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


def _segment(text: str, node: ast.stmt) -> str:
    """The source of a top-level statement, decorators included."""
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    lines = text.splitlines()
    return "\n".join(lines[first - 1:node.end_lineno])
