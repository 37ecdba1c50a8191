"""
Structure guards: the package's folders are its layers, and the layers
hold.

  - Each layer imports only the layers below it (DESIGN.md, "Layers and
    modules"), lazy imports inside functions included.
  - No import cycles between modules, lazy imports included.
  - Every module imports on its own in a fresh interpreter (as proxy.py's
    C{tests/test_circular_imports.py} checks).
  - The pure core -- the C{http/} layer and the cache package
    C{proxy/cache/} (its time comes from an injected C{now()}, its I/O is
    the store's, on the caller's thread) -- never imports
    C{twisted.internet}; the records and proxy layers never install the
    reactor.
  - Only L{twisted_proxy.http.framing} imports httptools.

Imports are run in fresh interpreters, since this one has already imported
everything.
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

# The layers: what each may import besides itself.  A layer is a folder
# under twisted_proxy/ (or a top-level module, named without .py).
LAYERS: dict[str, set[str]] = {
    "http": set(),
    "records": {"http"},
    "proxy": {"http", "records"},
    "app": {"proxy", "records", "http"},
    "client": {"http", "records"},
    "historytool": {"http", "records"},
    "testing": {"proxy", "records", "http"},
}
# Packages whose modules must not import twisted.internet at all.
NO_TWISTED_INTERNET = {"twisted_proxy.http", "twisted_proxy.proxy.cache"}
# Layers whose modules must not install the reactor.
NO_REACTOR = {"http", "records", "proxy"}

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


def packageModules() -> dict[str, str]:
    """
    Every module under C{twisted_proxy/}: dotted name to file path.
    """
    modules = {}
    for dirpath, dirnames, filenames in os.walk(PACKAGE_DIR):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
        rel = os.path.relpath(dirpath, ROOT).replace(os.sep, ".")
        for f in sorted(filenames):
            if not f.endswith(".py"):
                continue
            name = rel if f == "__init__.py" else rel + "." + f[:-3]
            modules[name] = os.path.join(dirpath, f)
    return modules


def isPure(module: str) -> bool:
    """
    Whether C{module} is in one of the L{NO_TWISTED_INTERNET} packages.
    """
    return any(module == p or module.startswith(p + ".") for p in NO_TWISTED_INTERNET)


def layerOf(module: str) -> str | None:
    """
    The layer of a dotted module name (L{None} for the package itself).
    """
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports(module: str, path: str, known: dict[str, str]) -> tuple[set[str], set[str]]:
    """
    What C{module} imports, anywhere in it (inside functions too), except
    under C{if TYPE_CHECKING:}.

    @return: the C{twisted_proxy} modules it imports (resolved, relative
        imports included), and the top-level names of everything else.
    """
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    isPackage = path.endswith("__init__.py")
    ours: set[str] = set()
    others: set[str] = set()

    def add(name: str) -> None:
        if name.split(".")[0] != "twisted_proxy":
            others.add(name.split(".")[0])
            return
        # The longest known module the name starts with.
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name != module:
            ours.add(name)

    typeOnly: set[int] = set()
    for node in ast.walk(tree):
        # Imports under "if TYPE_CHECKING:" are never run: they name types
        # for annotations and do not make a module depend on another.
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            typeOnly.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in typeOnly:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not isPackage:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                candidate = prefix + "." + alias.name
                add(candidate if candidate in known else prefix)
    return ours, others


class LayerTests(SynchronousTestCase):
    """
    Each layer imports only the layers below it, and no module is part of
    an import cycle.
    """

    def setUp(self) -> None:
        self.modules = packageModules()
        self.graph = {
            name: imports(name, path, self.modules)[0] for name, path in self.modules.items()
        }

    def test_layersKnown(self) -> None:
        """
        Every module belongs to a declared layer.
        """
        unknown = sorted(
            name for name in self.modules if layerOf(name) not in LAYERS and layerOf(name)
        )
        self.assertEqual(unknown, [])
        self.assertIn("twisted_proxy.http.framing", self.modules)

    def test_layers(self) -> None:
        violations = []
        for name, targets in sorted(self.graph.items()):
            layer = layerOf(name)
            if layer is None:
                continue
            allowed = LAYERS[layer] | {layer, None}
            for target in sorted(targets):
                if layerOf(target) not in allowed:
                    violations.append("{} imports {}".format(name, target))
        self.assertEqual(violations, [])

    def test_noCycles(self) -> None:
        """
        No strongly connected component of the import graph has more than
        one module (Tarjan's algorithm).
        """
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        onStack: set[str] = set()
        cycles: list[list[str]] = []

        def visit(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            onStack.add(v)
            for w in self.graph.get(v, ()):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in onStack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    onStack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))

        for v in sorted(self.graph):
            if v not in index:
                visit(v)
        self.assertEqual(cycles, [])

    def test_cycleDetected(self) -> None:
        """
        The cycle check sees a cycle when there is one.
        """
        self.graph = {"a": {"b"}, "b": {"a"}, "c": set()}
        self.assertRaises(self.failureException, self.test_noCycles)


class ImportAloneTests(SynchronousTestCase):
    """
    Every module imports on its own in a fresh interpreter; the pure core
    loads nothing of C{twisted.internet}, and the lower layers never
    install the reactor.
    """

    def test_pureCoreCovered(self) -> None:
        """
        The pure packages are checked module by module, the cache's stores
        and its test doubles included.
        """
        pure = [m for m in packageModules() if isPure(m)]
        self.assertIn("twisted_proxy.http.framing", pure)
        self.assertIn("twisted_proxy.proxy.cache", pure)
        self.assertIn("twisted_proxy.proxy.cache.disk", pure)
        self.assertIn("twisted_proxy.proxy.cache.testing", pure)
        self.assertNotIn("twisted_proxy.proxy.exchange", pure)

    def test_eachModuleImportsAlone(self) -> None:
        failures = []
        impure = []
        for module in packageModules():
            status, stderr, loaded = importAlone(module)
            if status != 0:
                failures.append("{}:\n{}".format(module, stderr.strip().splitlines()[-1:]))
                continue
            layer = layerOf(module)
            if isPure(module) and loaded:
                impure.append("{} loads {}".format(module, loaded))
            if layer in NO_REACTOR and "twisted.internet.reactor" in loaded:
                impure.append("{} installs the reactor".format(module))
        self.assertEqual(failures, [])
        self.assertEqual(impure, [])

    def test_probeDetectsReactor(self) -> None:
        """
        The probe sees the reactor when a module does import it.
        """
        status, stderr, loaded = importAlone("twisted.internet.reactor")
        self.assertEqual(status, 0, stderr)
        self.assertIn("twisted.internet.reactor", loaded)


class HttptoolsConfinedTests(SynchronousTestCase):
    """
    Nothing but L{twisted_proxy.http.framing} imports httptools.
    """

    def test_onlyFraming(self) -> None:
        modules = packageModules()
        users = sorted(
            name for name, path in modules.items() if "httptools" in imports(name, path, modules)[1]
        )
        self.assertEqual(users, ["twisted_proxy.http.framing"])


class TestHelpersTests(SynchronousTestCase):
    """
    Test files never import each other: what tests share lives in
    C{tests/_*.py} helper modules (or, for test doubles others may use, in
    L{twisted_proxy.testing}).
    """

    def test_noTestModuleImportsAnother(self) -> None:
        testsDir = os.path.join(ROOT, "tests")
        offenders = []
        for name in sorted(os.listdir(testsDir)):
            if not name.endswith(".py"):
                continue
            path = os.path.join(testsDir, name)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                targets: list[str] = []
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    module = node.module or ""
                    if node.level:
                        targets = [module] if module else [a.name for a in node.names]
                    elif module == "tests":
                        targets = [a.name for a in node.names]
                    elif module.startswith("tests."):
                        targets = [module[len("tests.") :]]
                for target in targets:
                    if target.split(".")[-1].startswith("test_"):
                        offenders.append("{} imports {}".format(name, target))
        self.assertEqual(offenders, [])
