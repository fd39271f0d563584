#!/usr/bin/env python3
"""Print the table of modules and jobs of docs/architecture.md from the modules' docstrings.

Each module's job is the first line of its docstring, so the table and the code say the same
thing; paste the output over the table when modules move. Usage:
`.venv/bin/python scripts/module_table.py`
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = {
    "procvision_algorithm_sdk": "SDK",
    "procvision_runner": "Runner",
    "procvision_devtools": "devtools",
}


def rows() -> list[tuple[str, str, str]]:
    """(layer, dotted module, job) for every module under src/, in path order."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        job = " ".join(doc.split("\n\n")[0].split()).replace("|", "\\|")
        out.append((LAYERS.get(parts[0], "?"), ".".join(parts), job))
    return out


def main() -> None:
    """Print the markdown table."""
    print("| layer | module | job |")
    print("|---|---|---|")
    for layer, module, job in rows():
        print(f"| {layer} | `{module}` | {job} |")


if __name__ == "__main__":
    main()
