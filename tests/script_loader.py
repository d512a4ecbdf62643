"""Load a file of ``scripts/`` as a module, so tests exercise exactly the code the scripts run.

The scripts are not a package (they are run as ``python scripts/NAME.py``), so tests load them by
path. Each call executes the file afresh (tests may change a module's globals) and registers the
module under its file name first, because dataclasses look their module up in ``sys.modules``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a freshly executed module named ``name``."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None, f"no script {name}.py in {SCRIPTS}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
