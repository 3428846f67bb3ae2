"""The project's own code uses only its dependencies' public names: a check run by ``make lint``.

An upgrade of Cosmos, dbt, pgserver or any other dependency may change or drop what it keeps private
(a name with a leading underscore) without notice, and code that patches a dependency breaks with
it. This check parses the project's Python (``ast``, nothing imported) and reports, naming the file
and line:

* an import of a third-party module through a private component (``import pkg.mod._impl``) or of
  a private name (``from pkg.constants import _KEY``);
* an attribute with a single leading underscore read or set on a name imported from a third-party
  module (``InProcessTestSupervisor._api_client()``), also through ``getattr``/``setattr``;
* a class subclassing a private third-party class;
* an assignment to ``__class__`` (swapping an object's class), on any object;
* monkeypatching: an attribute set on a third-party module or class imported by name
  (``SomeClass.method = ...``, ``monkeypatch.setattr(pkg_module, ...)``); a class
  is told by its CapWords name, and an object such as ``flask.g`` is left to hold what is set.

Third-party is anything importable that is neither in Python's standard library nor the project's
own: ``civic_warehouse``, ``city_simulator``, relative imports, and the modules beside the checked
files (the tests' ``helpers``, ``conftest``). The standard library's private names are out of scope:
it changes them only with Python itself, which the project pins. What a name holds is known only
where it was imported: an object reached through a variable, a parameter or a call is not checked.

    python -m civic_warehouse lint-private [PATH ...]     # default: the project's Python
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from civic_warehouse import settings

FIRST_PARTY = frozenset({"civic_warehouse", "city_simulator"})
# What ``make lint`` checks: every directory of the project holding Python.
PROJECT_PATHS = ("plugins", "simulator", "dags", "bench", "bi", "tests")
SKIPPED_DIRS = frozenset({"__pycache__", ".venv", ".venvs", "node_modules"})
PATCHING_CALLS = frozenset({"setattr", "delattr"})
READING_CALLS = frozenset({"getattr", "hasattr"})


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        path = (
            self.path.relative_to(Path.cwd()) if self.path.is_relative_to(Path.cwd()) else self.path
        )
        return f"{path}:{self.line}:{self.column + 1}: {self.message}"


def is_private(name: str) -> bool:
    """A single leading underscore: private by convention (``__dunder__`` names are protocol)."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def python_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
        elif path.is_dir():
            for found in sorted(path.rglob("*.py")):
                if not SKIPPED_DIRS.intersection(found.relative_to(path).parts):
                    yield found


def local_modules(files: Iterable[Path]) -> frozenset[str]:
    """The top-level modules among the checked files, which they import from beside them (a
    test's ``helpers``), and their top-level packages; a package's own modules are not."""
    names = set()
    for file in files:
        directory = file.parent
        if not (directory / "__init__.py").exists():
            names.add(file.stem)
            continue
        while (directory.parent / "__init__.py").exists():
            directory = directory.parent
        names.add(directory.name)
    return frozenset(names)


class _Checker(ast.NodeVisitor):
    def __init__(self, path: Path, first_party: frozenset[str]) -> None:
        self.path = path
        self.first_party = first_party
        self.findings: list[Finding] = []
        # Names bound by imports from third-party modules, to what they came from.
        self.third_party_names: dict[str, str] = {}
        # Those of them bound by ``import``: modules.
        self.third_party_modules: set[str] = set()

    def is_third_party(self, module: str) -> bool:
        top = module.partition(".")[0]
        return not (top in sys.stdlib_module_names or top in self.first_party)

    def report(self, node: ast.AST, message: str) -> None:
        self.findings.append(Finding(self.path, node.lineno, node.col_offset, message))

    def origin(self, node: ast.expr) -> str | None:
        """Where the object ``node`` names comes from, if it is a third-party import's name or
        an attribute reached from one."""
        if isinstance(node, ast.Name):
            return self.third_party_names.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.origin(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def is_patchable(self, node: ast.expr) -> bool:
        """``node`` names a third-party module or class (a CapWords name), whose attributes are
        the dependency's code; other objects' attributes (``flask.g``'s) are theirs to set."""
        if self.origin(node) is None:
            return False
        root = node
        while isinstance(root, ast.Attribute):
            root = root.value
        last = node.attr if isinstance(node, ast.Attribute) else node.id
        return (isinstance(root, ast.Name) and root.id in self.third_party_modules) or last[
            :1
        ].isupper()

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not self.is_third_party(alias.name):
                continue
            if any(is_private(part) for part in alias.name.split(".")):
                self.report(node, f"imports the private module {alias.name}")
            bound = alias.asname or alias.name.partition(".")[0]
            self.third_party_names[bound] = alias.name if alias.asname else bound
            self.third_party_modules.add(bound)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or not self.is_third_party(module):
            return
        if any(is_private(part) for part in module.split(".")):
            self.report(node, f"imports from the private module {module}")
        for alias in node.names:
            if is_private(alias.name):
                self.report(node, f"imports the private name {alias.name} from {module}")
            if alias.name != "*":
                self.third_party_names[alias.asname or alias.name] = f"{module}.{alias.name}"

    def visit_Attribute(self, node: ast.Attribute) -> None:
        base = self.origin(node.value)
        if base and is_private(node.attr):
            use = "sets" if isinstance(node.ctx, ast.Store | ast.Del) else "uses"
            self.report(node, f"{use} the private attribute {node.attr} of {base}")
        elif isinstance(node.ctx, ast.Store | ast.Del) and self.is_patchable(node.value):
            self.report(node, f"patches {base}.{node.attr} (an attribute of a dependency)")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self.check_class_swap(target)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.check_class_swap(node.target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.check_class_swap(node.target)
        self.generic_visit(node)

    def check_class_swap(self, target: ast.expr) -> None:
        if isinstance(target, ast.Attribute) and target.attr == "__class__":
            self.report(target, "assigns __class__ (swaps an object's class)")
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self.check_class_swap(element)

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        name = (
            function.id
            if isinstance(function, ast.Name)
            else function.attr
            if isinstance(function, ast.Attribute)
            else None
        )
        if name in PATCHING_CALLS | READING_CALLS and len(node.args) >= 2:
            target, attribute = node.args[0], node.args[1]
            attr = attribute.value if isinstance(attribute, ast.Constant) else None
            base = self.origin(target)
            if attr == "__class__" and name in PATCHING_CALLS:
                self.report(node, "assigns __class__ (swaps an object's class)")
            elif base and isinstance(attr, str) and is_private(attr):
                self.report(node, f"{name}() on the private attribute {attr} of {base}")
            elif name in PATCHING_CALLS and self.is_patchable(target):
                # setattr(module, ...), or pytest's monkeypatch.setattr(module, ...)
                self.report(node, f"{name}() patches {base} (a dependency)")
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            origin = self.origin(base)
            named = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
            if origin and is_private(origin.rpartition(".")[2] or named):
                self.report(base, f"class {node.name} subclasses the private class {origin}")
        self.generic_visit(node)


def check_source(
    source: str, path: Path, first_party: frozenset[str] = FIRST_PARTY
) -> list[Finding]:
    """The uses of dependencies' private names (and patches of them) in one module's ``source``."""
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as err:
        return [Finding(path, err.lineno or 0, (err.offset or 1) - 1, f"cannot parse: {err.msg}")]
    checker = _Checker(path, first_party)
    checker.visit(tree)
    return sorted(checker.findings, key=lambda f: (f.line, f.column))


def check_paths(paths: Iterable[Path]) -> list[Finding]:
    files = list(python_files(paths))
    first_party = FIRST_PARTY | local_modules(files)
    findings = []
    for file in files:
        findings += check_source(file.read_text(encoding="utf-8"), file, first_party)
    return findings


def main(paths: Iterable[str] = ()) -> int:
    """Print each finding; 1 if there was any, else 0."""
    roots = [Path(p) for p in paths] or [settings.PROJECT_ROOT / p for p in PROJECT_PATHS]
    missing = [str(p) for p in roots if not p.exists()]
    if missing:
        print(f"lint-private: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    findings = check_paths(roots)
    for finding in findings:
        print(finding)
    if findings:
        print(
            f"lint-private: {len(findings)} use(s) of dependencies' private names or patches of "
            "them; use their public API instead",
            file=sys.stderr,
        )
        return 1
    return 0
