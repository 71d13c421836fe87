"""The layers of kdlib import only downwards: read from the source with ``ast``, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[2] / "kdlib"


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved against its package),
    including the names of ``from X import name`` as ``X.name`` (a name may be a module)."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return found


def offenders(under: str, forbidden: str) -> dict[str, list[str]]:
    """The modules under ``kdlib/<under>`` that import ``kdlib.<forbidden>`` (or below it)."""
    target = "kdlib." + forbidden.replace("/", ".")
    found = {}
    for path in sorted((PACKAGE / under).rglob("*.py")):
        bad = sorted(m for m in imports(path) if m == target or m.startswith(target + "."))
        if bad:
            found[str(path.relative_to(PACKAGE.parent))] = bad
    return found


def test_the_import_reader_sees_relative_and_absolute_imports(tmp_path):
    assert offenders("cluster/ssh", "cluster/ssh")  # the reader finds what is there


def test_the_ssh_backend_does_not_import_the_local_backend():
    assert offenders("cluster/ssh", "cluster/local") == {}


def test_the_cluster_backends_do_not_import_the_experiments():
    assert offenders("cluster", "experiments") == {}


def test_the_book_does_not_import_the_experiments():
    """The experiments hand the book their pages (kdlib.experiments.pages)."""
    assert offenders("publish", "experiments") == {}


LONG = 350  # lines; a module longer than this says why in its docstring ("Long because ...")


def long_without_reason() -> list[str]:
    """The kdlib modules over :data:`LONG` lines whose docstring gives no "Long because" reason."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > LONG and "Long because" not in (ast.get_docstring(ast.parse(text)) or ""):
            found.append(str(path.relative_to(PACKAGE.parent)))
    return found


def test_every_long_module_says_why_it_is_long():
    assert long_without_reason() == []

