"""docs/reliability.md's table of hostile inputs matches what the files in this folder try."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[1] / "docs" / "reliability.md"


def _counted() -> dict[str, int]:
    out = {}
    for path in sorted(HERE.glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        spec = importlib.util.spec_from_file_location(f"_hostile_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out[path.name] = int(module.N_INPUTS)
    return out


def test_every_hostile_file_and_its_count_is_in_the_table() -> None:
    rows = dict(re.findall(r"^\| (test_\w+\.py) \|.*\| (\d+) \|$", DOC.read_text(), re.M))
    counted = _counted()
    assert {k: int(v) for k, v in rows.items()} == counted
    total = re.search(r"\| \*\*total\*\* \| \| \*\*(\d+)\*\* \|", DOC.read_text())
    assert total is not None and int(total.group(1)) == sum(counted.values())
