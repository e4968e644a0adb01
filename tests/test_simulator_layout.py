"""The simulator stands apart from the exporter: nothing under exporter/simulator/ imports the
rest of ``exporter``. The fake must not share the client's beliefs about the protocol, so a
change to the client's vocabulary cannot silently change what the fake serves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import exporter.simulator

PACKAGE = Path(exporter.simulator.__file__).parent


def outside_imports(source: str) -> list[str]:
    """The imports in a module of exporter/simulator/ that reach the rest of ``exporter``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "exporter"]
        elif isinstance(node, ast.ImportFrom):
            # Level 1 is this package; level 2 or more climbs into exporter itself.
            top = (node.module or "").split(".")[0]
            if node.level >= 2 or (node.level == 0 and top == "exporter"):
                found.append("." * node.level + (node.module or ""))
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from .wire import BadRequest", []),
        ("import json\nfrom aiohttp import web", []),
        ("from exporter.boomi import ACTIONS", ["exporter.boomi"]),
        ("import exporter.metrics", ["exporter.metrics"]),
        ("from .. import boomi", [".."]),
        ("from ..boomi import shapes", ["..boomi"]),
        ("def f() -> None:\n    from exporter import config", ["exporter"]),
    ],
)
def test_outside_imports_finds_every_way_to_reach_exporter(
    source: str, expected: list[str]
) -> None:
    assert outside_imports(source) == expected


def test_no_simulator_module_imports_the_rest_of_exporter() -> None:
    modules = sorted(PACKAGE.glob("**/*.py"))
    names = {path.name for path in modules}
    assert {
        "__init__.py",
        "world.py",
        "faults.py",
        "wire.py",
        "api.py",
        "control.py",
        "server.py",
    } <= names
    offending = {
        str(path.relative_to(PACKAGE)): imports
        for path in modules
        if (imports := outside_imports(path.read_text(encoding="utf-8")))
    }
    assert offending == {}
