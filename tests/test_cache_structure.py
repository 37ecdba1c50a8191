"""
The cache package is pure: no module of C{twisted_proxy.proxy.cache}
imports C{twisted.internet}, directly or through what it imports (time comes
from an injected C{now()}, I/O is the store's, on the caller's thread).
Checked in a fresh interpreter per module, since this one has imported
everything.
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
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("twisted.internet"))))
"""


def loadedInternet(module: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    if proc.returncode != 0:
        raise AssertionError("{} does not import alone:\n{}".format(module, proc.stderr))
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
        impure = {m: loaded for m in modules if (loaded := loadedInternet(m))}
        self.assertEqual(impure, {})

    def test_probeSeesTwistedInternet(self) -> None:
        """
        The probe does see C{twisted.internet} when a module loads it.
        """
        self.assertIn("twisted.internet.reactor", loadedInternet("twisted.internet.reactor"))
