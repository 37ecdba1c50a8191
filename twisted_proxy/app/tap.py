# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin's entry points: L{Options} and L{makeService}.

C{twistd -n proxyserver [options]} builds a L{ProxyService} holding one
listening service per C{--listen} endpoint, all sharing one
L{twisted_proxy.proxy.server.ProxyFactory} and one upstream pool; with
C{--workers N}, a L{twisted_proxy.app.workers.WorkerSupervisor} instead.
"""

from __future__ import annotations

from twisted.application import strports
from twisted.application.service import MultiService
from twisted.logger import Logger

from .options import Options
from .service import ProxyService, _ListeningService, buildProxy, logObservers

__all__ = ["Options", "makeService"]

_log = Logger()


def makeService(config: Options, reactor=None) -> MultiService:
    """
    Build the proxy service from parsed options: one process, or with
    C{--workers} a supervisor of worker processes.
    """
    if reactor is None:
        from twisted.internet import reactor  # noqa: F811

    if config["parent"] is not None:
        _log.info("Parent proxy: {parent}", parent=config["parent"].describe())
    _log.info("Access policy: {policy}", policy=config["policy"].describe())
    if config["workers"] > 1:
        from .workers import WorkerSupervisor

        supervisor = WorkerSupervisor(
            reactor, config.argv, config["ports"], config["workers"], logObservers(config, reactor)
        )
        if config["metrics"] is not None:
            from .metrics import MetricsService

            MetricsService.forWorkers(reactor, config, supervisor).setServiceParent(supervisor)
        return supervisor
    observers = logObservers(config, reactor)
    factory, pool = buildProxy(config["config"], reactor, transactionDetail=bool(observers))
    service = ProxyService(factory, pool, observers, reactor)
    for description in config["ports"]:
        endpoint = strports.endpoints.serverFromString(reactor, description)
        listening = _ListeningService(endpoint, factory)
        listening.setServiceParent(service)
    if config["metrics"] is not None:
        from .metrics import MetricsService

        MetricsService.forProxy(reactor, config, factory, pool).setServiceParent(service)
    return service
