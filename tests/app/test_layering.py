"""The application layer stands between the engine and its two users: it imports the engine,
the registry and itself, never Qt, napari, the widget or the command line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import napari_sam.app

APP = Path(napari_sam.app.__file__).parent
ALLOWED = ("napari_sam.app", "napari_sam.engine", "napari_sam.registry", "napari_sam.lineage")  # lineage: a leaf helper


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("napari_sam.app." + (node.module or "") if node.level else node.module or "")
    return names


def test_app_imports_only_downwards():
    files = sorted(APP.glob("*.py"))
    assert len(files) >= 6
    for f in files:
        for name in _imports(f):
            top = name.split(".")[0]
            assert top not in ("qtpy", "napari", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6"), (f.name, name)
            if top == "napari_sam":
                assert name.startswith(ALLOWED), (f.name, name)


def test_importing_the_app_loads_no_gui_and_no_torch():
    code = ("import sys, napari_sam.app; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('qtpy', 'napari', 'torch', 'PyQt5', 'PyQt6')]; print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
