"""No test asserts that something took less (or more) than so many seconds of real time.

On a shared two-core machine such an assertion is a coin that comes up wrong some day, and a
red CI means nothing lands. Tests assert order and causality instead (the simulator's request
log), or run on the fake clocks the code accepts. The exceptions are bounds whose time is the
very point, such as "SIGTERM exits within 10 s": they are generous (at least five times the
typical value) and say so in a comment containing "generous", or they are lower bounds on a
real-time delay (which a busy machine can only make easier to meet), commented "lower bound".

The check looks for the direct pattern: a difference of two readings of the real clock
(`time.monotonic()`, `time.time()`, `time.perf_counter()`, `loop.time()`, or a name assigned
from one), compared in an `assert` with a constant other than zero. Comparing two measurements with each
other (a poll's duration is at most the time we watched) or a clock with a deadline (a wait's
cap, "time remains") is not that pattern. A duration the code under test measured (a learnt delay, a metric) it cannot
see, so review still matters: of the 21 timing assertions issue 17 rewrote, it finds 14.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
CLOCK_FUNCTIONS = {
    "monotonic",
    "monotonic_ns",
    "time",
    "time_ns",
    "perf_counter",
    "perf_counter_ns",
}
MARKERS = ("generous", "lower bound")


def _is_clock_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):  # from time import monotonic
        return func.id in CLOCK_FUNCTIONS - {"time"}
    if not isinstance(func, ast.Attribute):
        return False
    owner = func.value
    if isinstance(owner, ast.Name) and owner.id == "time":
        return func.attr in CLOCK_FUNCTIONS
    if func.attr != "time":
        return False
    if isinstance(owner, ast.Name):  # loop.time()
        return owner.id == "loop"
    # asyncio.get_running_loop().time()
    return (
        isinstance(owner, ast.Call)
        and isinstance(owner.func, ast.Attribute)
        and (owner.func.attr in ("get_running_loop", "get_event_loop"))
    )


def _mentions(node: ast.AST, names: set[str]) -> bool:
    """The expression reads the real clock, or a name derived from it."""
    return any(
        _is_clock_call(child) or (isinstance(child, ast.Name) and child.id in names)
        for child in ast.walk(node)
    )


def _is_duration(node: ast.AST, clock_names: set[str], durations: set[str]) -> bool:
    """A difference of clock readings, or a name holding one."""
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and child.id in durations:
            return True
        if (
            isinstance(child, ast.BinOp)
            and isinstance(child.op, ast.Sub)
            and (_mentions(child.left, clock_names) or _mentions(child.right, clock_names))
        ):
            return True
    return False


def _is_constant(node: ast.AST) -> bool:
    """A number other than zero, an UPPER_CASE name or attribute, or arithmetic of those."""
    if isinstance(node, ast.Constant):
        value = node.value
        return isinstance(value, int | float) and not isinstance(value, bool) and value != 0
    if isinstance(node, ast.Name):
        return node.id.isupper()
    if isinstance(node, ast.Attribute):
        return node.attr.isupper()
    if isinstance(node, ast.BinOp):
        return _is_constant(node.left) and _is_constant(node.right)
    if isinstance(node, ast.UnaryOp):
        return _is_constant(node.operand)
    return False


def _targets(node: ast.Assign | ast.AnnAssign | ast.AugAssign) -> list[tuple[str, ast.AST]]:
    """(name, the value assigned to it) for plain names, tuples matched element by element."""
    value = node.value
    if value is None:
        return []
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    pairs: list[tuple[str, ast.AST]] = []
    for target in targets:
        if isinstance(target, ast.Name):
            pairs.append((target.id, value))
        elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            for element, part in zip(target.elts, value.elts, strict=False):
                if isinstance(element, ast.Name):
                    pairs.append((element.id, part))
    return pairs


def wall_clock_assertions(source: str) -> list[int]:
    """Line numbers of unmarked asserts comparing a real-clock duration with a constant."""
    lines = source.splitlines()
    found: list[int] = []
    tree = ast.parse(source)
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        assignments = [
            pair
            for node in ast.walk(function)
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign)
            for pair in _targets(node)
        ]
        clock_names: set[str] = set()
        durations: set[str] = set()
        changed = True
        while changed:  # names derived from names derived from the clock, ...
            changed = False
            for name, value in assignments:
                if name not in durations and _is_duration(value, clock_names, durations):
                    durations.add(name)
                    changed = True
                if name not in clock_names and _mentions(value, clock_names):
                    clock_names.add(name)
                    changed = True
        for node in ast.walk(function):
            if not isinstance(node, ast.Assert):
                continue
            for compare in ast.walk(node.test):
                if not isinstance(compare, ast.Compare):
                    continue
                operands = [compare.left, *compare.comparators]
                timed = any(_is_duration(op, clock_names, durations) for op in operands)
                if timed and any(_is_constant(op) for op in operands):
                    context = "\n".join(lines[max(0, node.lineno - 4) : node.end_lineno])
                    if not any(marker in context for marker in MARKERS):
                        found.append(node.lineno)
                    break
    return sorted(set(found))


def wrap(body: str) -> str:
    return "import time\n\nasync def test() -> None:\n" + "".join(
        f"    {line}\n" for line in body.splitlines()
    )


@pytest.mark.parametrize(
    ("body", "flagged"),
    [
        ("started = time.monotonic()\nassert time.monotonic() - started < 5", True),
        (
            "t0 = time.perf_counter()\nelapsed = time.perf_counter() - t0\nassert elapsed < 3.0",
            True,
        ),
        ("a = time.monotonic()\nb = a\ntook = time.monotonic() - b\nassert 0 < took < LIMIT", True),
        ("assert abs(entry - time.time()) < 60", True),
        ("loop = get()\nt = loop.time()\nassert loop.time() - t >= 2 * 0.05", True),
        ("t = time.monotonic()\nassert time.monotonic() - t <= INTERVAL * 1.1 + 1.0", True),
        ("a, b = time.time(), time.monotonic()\nd = time.monotonic() - b\nassert d < 2", True),
        # Not the pattern: a deadline, a bracket, two measurements, a fake clock.
        ("deadline = time.monotonic() + 5\nassert time.monotonic() < deadline", False),
        (
            "deadline = time.monotonic() + 5\nleft = deadline - time.monotonic()\nassert left > 0",
            False,
        ),
        ("before = time.time()\nassert before <= stamp", False),
        ("t = time.monotonic()\nelapsed = time.monotonic() - t\nassert duration <= elapsed", False),
        ("start = clock()\nassert clock() - start < 1.1", False),
        ("assert learnt <= settling.at - query.at", False),
        # Marked as a bound whose time is the point.
        (
            "t = time.monotonic()\n# A generous bound: typical 0.5 s\nassert time.monotonic() - t < 10",
            False,
        ),
        ("t = time.monotonic()\nassert time.monotonic() - t >= 0.1  # lower bound", False),
    ],
)
def test_the_check_finds_exactly_the_wall_clock_assertions(body: str, flagged: bool) -> None:
    assert bool(wall_clock_assertions(wrap(body))) == flagged


def test_no_test_asserts_a_wall_clock_duration() -> None:
    offending = {
        path.name: lines
        for path in sorted(TESTS.glob("*.py"))
        if (lines := wall_clock_assertions(path.read_text(encoding="utf-8")))
    }
    assert offending == {}, (
        "assert order or causality (tests/sim_log.py), or use a fake clock; a bound whose time"
        " is the point must be generous, and say so in a comment ('generous')"
    )
