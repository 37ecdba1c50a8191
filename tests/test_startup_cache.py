"""
The cache's life in the application: built from the settings, a disk
cache's index rebuilt in steps on the service's reactor and its store
closed (its directory unlocked) when the service stops, a directory in use
refused in one line, one directory per worker, and what a reload (SIGHUP)
does to each cache setting.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tests._typing import TestCaseMixin
from twisted_proxy.app.runtime import StartupError
from twisted_proxy.app.service import ProxyService
from twisted_proxy.app.tap import Options, makeService
from twisted_proxy.app.workerprocess import workerConfig
from twisted_proxy.app.workers import checkWorkerCaches
from twisted_proxy.proxy.cache import CacheDirectoryError, DiskStore, MemoryStore
from twisted_proxy.proxy.cache.entry import StoredResponse
from twisted_proxy.testing import logEvents


def storedEntry(path: str, key: str = "http://h/a") -> None:
    """
    Leave one stored response in a disk cache at C{path}, as a previous run
    would have.
    """
    store = DiskStore(path)
    writer = store.openWriter(
        StoredResponse(
            key=key,
            varyNames=(),
            varyValues=(),
            status=200,
            reason=b"OK",
            version=b"1.1",
            headers=[(b"Cache-Control", b"max-age=600")],
            requestTime=1.0,
            responseTime=2.0,
            dateValue=2.0,
            ageValue=0,
        ),
        4,
    )
    assert writer is not None
    writer.write(b"body")
    writer.commit()
    store.close()


class TempDirMixin(TestCaseMixin):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)

    def service(self, *args: str, reactor: MemoryReactorClock | None = None) -> ProxyService:
        """
        The proxy service built from C{args}, on a memory reactor (its
        socket is real, on a port the system chose; the reactor serves it
        in memory).
        """
        config = Options()
        config.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", *args])
        service = makeService(config, reactor if reactor is not None else MemoryReactorClock())
        assert isinstance(service, ProxyService)
        self.addCleanup(self.stop, service)
        return service

    def stop(self, service: ProxyService) -> None:
        if service.running:
            self.successResultOf(service.stopService())
        for listener in service.listeners:
            listener.close()


class CacheLifecycleTests(TempDirMixin, SynchronousTestCase):
    def test_memoryCache(self) -> None:
        """
        By default the cache is in memory, 64M; C{--cache-size 0} turns it
        off.
        """
        cache = self.service("--cache-max-object", "1M").factory.cache
        assert cache is not None
        self.assertIsInstance(cache.store, MemoryStore)
        self.assertEqual((cache.store.capacity, cache.store.maxObjectSize), (64 << 20, 1 << 20))
        self.assertIsNone(self.service("--cache-size", "0").factory.cache)

    def test_diskCacheRebuiltThenClosed(self) -> None:
        """
        A disk cache's entries from a previous run are found in steps on the
        service's reactor once it starts; when it stops, the store is
        closed and the directory unlocked for the next run.
        """
        path = os.path.join(self.dir, "cache")
        storedEntry(path)
        reactor = MemoryReactorClock()
        service = self.service("--cache-dir", path, reactor=reactor)
        assert service.factory.cache is not None
        store = service.factory.cache.store
        self.assertIsInstance(store, DiskStore)
        self.assertEqual(store.count, 0)
        # In use while the proxy runs.
        self.assertRaises(CacheDirectoryError, DiskStore, path)
        service.startService()
        self.assertEqual(store.count, 0)
        for _ in range(5):
            reactor.advance(0)
        self.assertEqual(store.count, 1)
        self.successResultOf(service.stopService())
        DiskStore(path).close()

    def test_stopDuringRebuild(self) -> None:
        """
        Stopping before the index is rebuilt stops the rebuild: nothing
        runs on the reactor after the stop.
        """
        path = os.path.join(self.dir, "cache")
        for i in range(300):
            storedEntry(path, "http://h/%d" % (i,))
        reactor = MemoryReactorClock()
        service = self.service("--cache-dir", path, reactor=reactor)
        service.startService()
        reactor.advance(0)
        self.successResultOf(service.stopService())
        self.assertEqual(reactor.getDelayedCalls(), [])
        DiskStore(path).close()

    def test_directoryInUse(self) -> None:
        """
        A cache directory another process uses stops the start, in one
        line, with nothing left open.
        """
        path = os.path.join(self.dir, "cache")
        other = DiskStore(path)
        self.addCleanup(other.close)
        config = Options()
        history = os.path.join(self.dir, "history.jsonl")
        config.parseOptions(["--cache-dir", path, "--history", history])
        error = self.assertRaises(StartupError, makeService, config, MemoryReactorClock())
        self.assertEqual(
            str(error),
            f"Cache directory {path} is in use by another process; give each process its own "
            "cache directory.",
        )
        self.assertEqual(error.exitCode, 1)

    def test_workersHaveADirectoryEach(self) -> None:
        """
        Worker N keeps its disk cache in DIR/worker-N; the parent makes and
        checks them all before it starts any worker.
        """
        path = os.path.join(self.dir, "cache")
        config = Options()
        config.parseOptions(["--cache-dir", path, "--workers", "3"])
        proxyConfig = config["proxyConfig"]
        self.assertEqual(workerConfig(proxyConfig, 2).cacheDir, os.path.join(path, "worker-2"))
        checkWorkerCaches(proxyConfig, 3)
        self.assertEqual(sorted(os.listdir(path)), ["worker-1", "worker-2", "worker-3"])
        busy = DiskStore(os.path.join(path, "worker-2"))
        self.addCleanup(busy.close)
        error = self.assertRaises(StartupError, checkWorkerCaches, proxyConfig, 3)
        self.assertIn(os.path.join(path, "worker-2") + " is in use by another process", str(error))
        supervisor = makeService(config, MemoryReactorClock())
        error = self.assertRaises(StartupError, supervisor.bind)
        self.assertIn("worker-2 is in use by another process", str(error))
        # Without a disk cache, workers share nothing.
        config = Options()
        config.parseOptions(["--workers", "3"])
        self.assertIs(workerConfig(config["proxyConfig"], 2), config["proxyConfig"])


class CacheReloadTests(TempDirMixin, SynchronousTestCase):
    """
    SIGHUP: the cache in use is never replaced (a transaction in flight
    keeps the cache it looked up in); its limits change in place, and what
    would need another cache takes a restart, as the log says.
    """

    def setUp(self) -> None:
        super().setUp()
        self.events = logEvents(self)

    def reload(self, service: ProxyService, text: str) -> str:
        with open(self.config, "w") as f:
            f.write(text)
        before = len(self.events)
        service.reload()
        [line] = [e for e in self.events[before:] if "Configuration" in (e.get("log_format") or "")]
        self.assertEqual(
            line["log_format"], "Configuration reloaded{source}: {changes}.", line.get("error")
        )
        return line["changes"]

    def started(self, text: str) -> ProxyService:
        self.config = os.path.join(self.dir, "proxy.toml")
        with open(self.config, "w") as f:
            f.write(text)
        service = self.service("--config", self.config)
        service.startService()
        return service

    def test_memoryCacheResized(self) -> None:
        service = self.started('cache-size = "1M"\n')
        cache = service.factory.cache
        assert cache is not None
        store = cache.store
        changes = self.reload(
            service,
            'cache-size = "4M"\ncache-max-object = "2M"\ncache-heuristic-max = 60\n'
            "cache-collapse-timeout = 1\n",
        )
        self.assertIn('cache-size "1M" -> "4M"', changes)
        self.assertIs(service.factory.cache, cache)
        self.assertIs(cache.store, store)
        self.assertEqual((store.capacity, store.maxObjectSize), (4 << 20, 2 << 20))
        self.assertEqual((cache.config.heuristicMax, cache.config.collapseTimeout), (60.0, 1.0))

    def test_shrunkBelowWhatIsStored(self) -> None:
        """
        A smaller budget than what is stored: the entries stay until new
        ones evict them, and the log says so.
        """
        service = self.started('cache-size = "1M"\n')
        assert service.factory.cache is not None
        store = service.factory.cache.store
        writer = store.openWriter(
            StoredResponse(
                key="http://h/a",
                varyNames=(),
                varyValues=(),
                status=200,
                reason=b"OK",
                version=b"1.1",
                headers=[],
                requestTime=1.0,
                responseTime=2.0,
                dateValue=2.0,
                ageValue=0,
            )
        )
        assert writer is not None
        writer.write(b"x" * 100_000)
        writer.commit()
        changes = self.reload(service, "cache-size = 50000\n")
        self.assertIn("the cache holds more than its new size until new responses evict", changes)
        self.assertEqual(store.capacity, 50000)

    def test_turningOnOrOffTakesARestart(self) -> None:
        service = self.started("cache-size = 0\n")
        self.assertIsNone(service.factory.cache)
        self.assertIn("turning the cache on takes a restart", self.reload(service, ""))
        self.assertIsNone(service.factory.cache)
        service = self.started("")
        cache = service.factory.cache
        changes = self.reload(service, "cache-size = 0\n")
        self.assertIn("turning the cache off takes a restart", changes)
        self.assertIs(service.factory.cache, cache)
        assert cache is not None
        self.assertEqual(cache.store.capacity, 64 << 20)

    def test_diskCacheDoesNotMove(self) -> None:
        first = os.path.join(self.dir, "one")
        service = self.started(f'cache-dir = "{first}"\n')
        assert service.factory.cache is not None
        store = service.factory.cache.store
        changes = self.reload(
            service, f'cache-dir = "{os.path.join(self.dir, "two")}"\ncache-disk-size = "2G"\n'
        )
        self.assertIn(f'cache-dir takes a restart to change (still "{first}")', changes)
        self.assertIs(service.factory.cache.store, store)
        assert isinstance(store, DiskStore)
        self.assertEqual(store.path, first)
        self.assertEqual(store.capacity, 1 << 30)
        # The disk budget of the same directory changes in place.
        changes = self.reload(service, f'cache-dir = "{first}"\ncache-disk-size = "2G"\n')
        self.assertNotIn("restart", changes)
        self.assertEqual(store.capacity, 2 << 30)

    def test_pseudonymKeptByTheCache(self) -> None:
        service = self.started('pseudonym = "one"\n')
        changes = self.reload(service, 'pseudonym = "two"\n')
        self.assertIn("the cache keeps its old name in Cache-Status until a restart", changes)
        self.assertEqual(service.factory.pseudonymText, "two")
        assert service.factory.cache is not None
        self.assertEqual(service.factory.cache.config.name, "one")
