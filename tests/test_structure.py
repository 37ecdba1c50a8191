"""
Structure guards: the pure modules stay pure, every module imports on its
own (no circular imports, as proxy.py's C{tests/test_circular_imports.py}
checks), and only L{twisted_proxy.framing} uses httptools.

Each import runs in a fresh interpreter, since this one has already
imported everything.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import twisted_proxy

PACKAGE_DIR = os.path.dirname(os.path.abspath(twisted_proxy.__file__))
ROOT = os.path.dirname(PACKAGE_DIR)

# Pure modules that must not import twisted.internet at all.
NO_TWISTED_INTERNET = ["errors", "headers", "framing"]
# Modules that may use parts of Twisted but must not install the reactor.
NO_REACTOR = NO_TWISTED_INTERNET + ["policy", "history"]

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("twisted.internet"))))
"""


def importAlone(module: str) -> tuple[int, str, list[str]]:
    """
    Import C{module} in a fresh interpreter.

    @return: the exit status, stderr, and the C{twisted.internet} modules
        it loaded.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    loaded: list[str] = []
    if proc.returncode == 0:
        loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc.returncode, proc.stderr, loaded


def packageModules() -> list[str]:
    """
    The dotted names of every module under C{twisted_proxy/}.
    """
    names = []
    for dirpath, dirnames, filenames in os.walk(PACKAGE_DIR):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
        rel = os.path.relpath(dirpath, ROOT).replace(os.sep, ".")
        for f in sorted(filenames):
            if not f.endswith(".py"):
                continue
            if f == "__init__.py":
                names.append(rel)
            else:
                names.append(rel + "." + f[:-3])
    return names


def sourceFiles() -> list[str]:
    files = []
    for dirpath, dirnames, filenames in os.walk(PACKAGE_DIR):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        files.extend(os.path.join(dirpath, f) for f in filenames if f.endswith(".py"))
    return sorted(files)


def importedTopLevel(path: str) -> set[str]:
    """
    The top-level names of the modules C{path} imports (anywhere in it,
    including inside functions).
    """
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


class PureModuleTests(SynchronousTestCase):
    """
    The pure modules do not import the reactor (or, for the framing layer,
    any of C{twisted.internet}).
    """

    def test_noReactor(self) -> None:
        checked = []
        for name in NO_REACTOR:
            if not os.path.exists(os.path.join(PACKAGE_DIR, name + ".py")):
                continue
            module = "twisted_proxy." + name
            status, stderr, loaded = importAlone(module)
            self.assertEqual(status, 0, "{} does not import: {}".format(module, stderr))
            self.assertNotIn("twisted.internet.reactor", loaded, module)
            if name in NO_TWISTED_INTERNET:
                self.assertEqual(loaded, [], module)
            checked.append(name)
        self.assertIn("framing", checked)
        self.assertIn("headers", checked)
        self.assertIn("errors", checked)

    def test_probeDetectsReactor(self) -> None:
        """
        The probe sees the reactor when a module does import it.
        """
        status, stderr, loaded = importAlone("twisted.internet.reactor")
        self.assertEqual(status, 0, stderr)
        self.assertIn("twisted.internet.reactor", loaded)


class CircularImportTests(SynchronousTestCase):
    """
    Every module imports on its own in a fresh interpreter.
    """

    def test_eachModuleImportsAlone(self) -> None:
        modules = packageModules()
        self.assertIn("twisted_proxy.framing", modules)
        failures = []
        for module in modules:
            status, stderr, _ = importAlone(module)
            if status != 0:
                failures.append("{}:\n{}".format(module, stderr.strip().splitlines()[-1:]))
        self.assertEqual(failures, [])


class HttptoolsConfinedTests(SynchronousTestCase):
    """
    Nothing but L{twisted_proxy.framing} imports httptools.
    """

    def test_onlyFraming(self) -> None:
        users = [
            os.path.relpath(path, ROOT)
            for path in sourceFiles()
            if "httptools" in importedTopLevel(path)
        ]
        self.assertEqual(users, [os.path.join("twisted_proxy", "framing.py")])
