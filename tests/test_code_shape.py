"""The code's shape, as the developers' guide sets it: small modules, short functions.

Every source module of the four packages has at most 500 lines and every function or
method at most 60, from its ``def`` line to its last line (docstring included; decorators,
such as a click command's option declarations, are not the function's body). ruff's C901
(complexity <= 12) and PLC0415 (no import inside a function) are checked by the README's
test command.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hil", "instruments", "sim_backends", "protocols")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _long_functions(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_the_packages_have_modules() -> None:
    # guards the two checks below against passing on an empty or mis-rooted tree
    assert len(_modules()) > 50


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_at_most_500_lines(path: Path) -> None:
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)} has {n} lines: split it by job"


def test_functions_at_most_60_lines() -> None:
    long = [f for p in _modules() for f in _long_functions(p)]
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


def test_the_length_check_sees_a_long_function(tmp_path: Path) -> None:
    def body(n: int) -> str:
        return "\n".join(f"    x{i} = {i}" for i in range(n))

    fits = tmp_path / "fits.py"  # def + 59 lines = 60, with a decorator above it
    fits.write_text(f"@decorated\ndef fits():\n{body(MAX_FUNCTION_LINES - 1)}\n")
    long = tmp_path / "long.py"  # def + 60 lines = 61
    long.write_text(f"def too_long():\n{body(MAX_FUNCTION_LINES)}\n")
    assert _long_functions(fits, tmp_path) == []
    assert _long_functions(long, tmp_path) == ["long.py:1 too_long (61 lines)"]
