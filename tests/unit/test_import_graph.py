"""No import circles anywhere in shmbus: every module can be read, and imported, on
its own terms. Imports under `if TYPE_CHECKING:` are annotations only and don't count;
imports inside functions do (that is how a circle hides)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import shmbus

PACKAGE_DIR = Path(shmbus.__file__).parent


def _module_name(path):
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_type_checking_block(node):
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported_names(module):
    """Every module name `module` imports, outside `if TYPE_CHECKING:` blocks."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()

    def visit(node):
        if _is_type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


IMPORTED = {module: _imported_names(module) for module in MODULES}
# The import graph within the package (the compiled C core is not a .py module).
GRAPH = {module: {n for n in names if n in MODULES and n != module} for module, names in IMPORTED.items()}


def test_no_import_circle():
    done, on_path = set(), []

    def visit(module):
        if module in on_path:
            pytest.fail("import circle: " + " -> ".join(on_path[on_path.index(module):] + [module]))
        if module in done:
            return
        on_path.append(module)
        # A package's __init__ runs before its submodules: importing a submodule
        # imports its parents too, but they are not part of a circle unless they
        # import it back (which the graph has as their own edge).
        for imported in sorted(GRAPH[module]):
            visit(imported)
        on_path.pop()
        done.add(module)

    for module in sorted(MODULES):
        visit(module)


def test_no_subcommand_imports_the_cli_main():
    """cli/main only assembles the subcommands; they know nothing of it."""
    importers = {m for m, imported in GRAPH.items() if "shmbus.cli.main" in imported and m.startswith("shmbus.cli.")}
    assert importers == set()


@pytest.mark.parametrize("native", ["shmbus._native._core", "shmbus._native._fastpath"])
def test_only_the_backend_calls_the_c_core(native):
    """One owner of the C boundary (pyzmq's backend rule): the cffi core, and the
    C-API fast path that is bound to it."""
    callers = {m for m, imported in IMPORTED.items() if native in imported}
    assert callers and all(m.startswith("shmbus._backend.") for m in callers), callers


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("shmbus.cli.")
                                          or m.startswith("shmbus._supervisor")))
def test_each_entry_module_imports_on_its_own(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
