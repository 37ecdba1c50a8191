"""
Helpers shared by the protocol tests of the proxy's server side: an
htpasswd file for a test, and an origin's answer.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy import testing


def writeHtpasswd(test: SynchronousTestCase) -> str:
    """
    A temporary htpasswd file with the user alice, password s3cret (bcrypt,
    cheap cost), removed after the test.
    """
    import shutil
    import tempfile

    d = tempfile.mkdtemp()
    test.addCleanup(shutil.rmtree, d)
    return testing.writeHtpasswd(d)


# What the fake origin answers in the relay tests.
OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\n\r\nhello"
