"""The command line's modules import without a circle: only the package imports main,
which assembles the root group from subcommands that know nothing of it."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import shmbus.cli

CLI_DIR = Path(shmbus.cli.__file__).parent
MODULES = sorted(p.stem for p in CLI_DIR.glob("*.py"))


def _imports_within_cli(module):
    """The shmbus.cli modules that `module` imports (relative imports of this package)."""
    tree = ast.parse((CLI_DIR / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import a, b
                found.update(alias.name for alias in node.names)
    return found & set(MODULES)


def test_only_the_package_imports_main():
    importers = {m for m in MODULES if "main" in _imports_within_cli(m)}
    assert importers == {"__init__"}


def test_no_import_circle():
    graph = {m: _imports_within_cli(m) - {"__init__"} for m in MODULES}
    done, on_path = set(), []

    def visit(module):
        if module in on_path:
            pytest.fail("import circle: " + " -> ".join(on_path[on_path.index(module):] + [module]))
        if module in done:
            return
        on_path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        on_path.pop()
        done.add(module)

    for module in MODULES:
        visit(module)


@pytest.mark.parametrize("module", [m for m in MODULES if m != "__init__"])
def test_each_module_imports_on_its_own(module):
    done = subprocess.run([sys.executable, "-c", f"import shmbus.cli.{module}"],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
