"""The runtime stands on its own: no module under edgeecg/ imports torch or edgeecg.train when imported.

A Jetson or a CPU-only install has neither, so each runtime module is imported
in a fresh interpreter whose import system refuses them; a module that needs
them may only import them inside the function that uses them.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import subprocess
import sys

import edgeecg

BLOCKED = ("torch", "edgeecg.train")
NOT_RUNTIME = ("edgeecg.train", "edgeecg.export", "edgeecg.__main__")
# modules of an optional extra (name prefix -> the extra's packages): checked where the extra is installed
OPTIONAL = {"edgeecg.serve": ("fastapi", "uvicorn", "python_multipart", "prometheus_client")}

# Runs in the subprocess: a meta-path finder ahead of all others raises for the blocked packages,
# then every runtime module is imported; failures are listed, one per line.
IMPORT_ALL = """
import importlib, sys, traceback

BLOCKED = {blocked!r}


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{{name}} is blocked: the runtime must not import it")
        return None


sys.meta_path.insert(0, Refuse())
failed = []
for module in {modules!r}:
    try:
        importlib.import_module(module)
    except Exception as exc:
        failed.append(f"{{module}}: {{type(exc).__name__}}: {{exc}}")
try:
    importlib.import_module("edgeecg.train")
    failed.append("the blocker let edgeecg.train through")
except ImportError:
    pass
sys.exit("\\n".join(failed) or None)
"""


def runtime_modules() -> list[str]:
    """edgeecg and every module below it, without the training and export packages."""
    found = pkgutil.walk_packages(edgeecg.__path__, "edgeecg.")
    names = [m.name for m in found if not any(m.name == n or m.name.startswith(n + ".") for n in NOT_RUNTIME)]
    missing = [prefix for prefix, needs in OPTIONAL.items() if not all(map(importlib.util.find_spec, needs))]
    return ["edgeecg", *sorted(n for n in names if not n.startswith(tuple(missing)))]


def test_runtime_modules_import_without_torch_or_training():
    modules = runtime_modules()
    assert {"edgeecg.metrics", "edgeecg.formats", "edgeecg.bench", "edgeecg.backends"} <= set(modules)
    code = IMPORT_ALL.format(blocked=BLOCKED, modules=modules)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"runtime modules that import {' or '.join(BLOCKED)}:\n{done.stderr}"
