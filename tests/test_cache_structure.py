"""
The cache package is pure: no module of C{twisted_proxy.proxy.cache}
imports C{twisted.internet}, directly or through what it imports (time comes
from an injected C{now()}, I/O is the store's, on the caller's thread).
Checked in a fresh interpreter that imports every module of the package,
since this one has imported everything.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import twisted_proxy
import twisted_proxy.proxy.cache as cachePackage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(twisted_proxy.__file__)))

_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("twisted.internet"))))
"""


def loadedInternet(*modules: str) -> list[str]:
    """
    The C{twisted.internet} modules loaded by importing C{modules} in a
    fresh interpreter.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    if proc.returncode != 0:
        raise AssertionError("{} do not import:\n{}".format(modules, proc.stderr))
    loaded: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return loaded


class PureCacheTests(SynchronousTestCase):
    def test_noTwistedInternet(self) -> None:
        """
        No module of the package loads twisted.internet.
        """
        modules = [cachePackage.__name__] + [
            cachePackage.__name__ + "." + m.name
            for m in pkgutil.iter_modules(cachePackage.__path__)
        ]
        self.assertIn("twisted_proxy.proxy.cache.disk", modules)
        self.assertIn("twisted_proxy.proxy.cache.testing", modules)
        # One interpreter imports them all: whatever any of them loads,
        # directly or not, shows.
        self.assertEqual(loadedInternet(*modules), [])

    def test_probeSeesTwistedInternet(self) -> None:
        """
        The probe does see C{twisted.internet} when a module loads it.
        """
        self.assertIn("twisted.internet.reactor", loadedInternet("twisted.internet.reactor"))
