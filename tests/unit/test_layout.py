"""Layout policy: the runtime package stands alone; the tooling and DAG files depend on it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO

RUNTIME = REPO / "include" / "trainyard"


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def test_no_runtime_module_imports_the_local_tooling_or_the_tests() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] in {"trainyard_dev", "tests"}
        )
        for path in RUNTIME.rglob("*.py")
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_the_runtime_package_holds_no_process_management() -> None:
    """Starting and stopping services is the tooling's job (tools/trainyard_dev/services.py)."""
    for path in RUNTIME.rglob("*.py"):
        assert not {"subprocess", "signal"} & _imported_modules(path) - {
            # git is asked for the code version in lineage; nothing else spawns processes.
            "subprocess" if path.name == "lineage.py" else ""
        }, path
