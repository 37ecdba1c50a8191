# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin's C{makeService}: C{twistd -n proxyserver [options]}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import Options, reportError
from .runtime import StartupError
from .service import ProxyService
from .settings import SettingError

if TYPE_CHECKING:
    from .workers import WorkerSupervisor

__all__ = ["Options", "makeService"]


def makeService(config: Options, reactor: Any = None) -> ProxyService | WorkerSupervisor:
    """
    Build the proxy service from parsed options: one process, or with
    C{--workers} a supervisor of worker processes.

    When twistd calls it, the listening sockets and the record files are
    opened here, before twistd daemonizes and writes its pid file: a port
    in use is then reported on the terminal, in one line, and twistd exits
    1 (2 for a file that cannot be written), with no pid file left behind.
    (Opened in C{privilegedStartService}, the error would happen in the
    daemon, after twistd's launcher started waiting for it.)
    """
    if reactor is None:
        from twisted.internet import reactor

    built = config["built"]
    byTwistd = config.runByTwistd
    try:
        service: ProxyService | WorkerSupervisor
        if built.settings["workers"] > 1:
            from .workers import WorkerSupervisor

            service = WorkerSupervisor(built, reactor, config["source"], byTwistd)
        else:
            service = ProxyService(built, reactor, config["source"], byTwistd)
        if byTwistd:
            service.bind()
    except SettingError as e:
        if not byTwistd:
            raise
        reportError(str(e))
        raise SystemExit(2) from None
    except StartupError as e:
        if not byTwistd:
            raise
        reportError(str(e), hint=False)
        raise SystemExit(e.exitCode) from None
    return service
