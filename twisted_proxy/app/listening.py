# -*- test-case-name: tests.test_startup -*-
"""
Listening sockets: L{Listener}, one per socket the proxy listens on.

A C{--listen} value is any of Twisted's server endpoint strings that end in
a stream socket (C{tcp:}, C{tcp6:}, C{unix:}, C{ssl:}, C{haproxy:...},
C{systemd:}), or a bare port, which means IPv4 and IPv6.  Twisted's own
parser reads the string (L{serverFromString}), against a reactor that only
records what the endpoint would ask for (L{_Recorder}), so every option of
those endpoints keeps its meaning; the socket itself is then made here,
with the plain C{socket} module, because the proxy needs three things
endpoints do not give:

  - The socket is opened before twistd daemonizes (L{Listener.bind} is
    called by C{makeService}), so a port in use is reported on the
    terminal and twistd exits 1, in daemon mode too; and it can be handed
    to worker processes as a file descriptor.
  - IPv6 sockets are IPv6-only (C{IPV6_V6ONLY}, as nginx does), so that
    C{tcp:8080} and C{tcp6:8080} can both be open, and an IPv4 client is
    seen as C{127.0.0.1}, never as C{::ffff:127.0.0.1}.
  - The listen backlog fits the connection limit (see L{listenBacklog})
    unless the endpoint string sets C{backlog=}.

The reactor then serves the socket with C{adoptStreamPort}
(L{Listener.adopt}).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import stat
from typing import Any

from twisted.internet.interfaces import (
    IReactorSocket,
    IReactorSSL,
    IReactorTCP,
    IReactorUNIX,
)
from twisted.internet.protocol import Factory
from zope.interface import implementer

from .haproxy import HAProxyWrappingFactory, PeerFirstHAProxyFactory

__all__ = ["Listener", "ListenError", "listenBacklog", "metricsAddress", "metricsEndpoint"]


class ListenError(Exception):
    """
    A socket could not be opened; the message is one line saying which
    address, why, and what to do.

    @ivar reason: the system's reason alone ("Address family not supported
        by protocol").
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


def somaxconn() -> int | None:
    """
    The kernel's cap on listen backlogs (Linux), or L{None} if unknown.
    """
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def listenBacklog(maxConnections: int) -> int:
    """
    The listen backlog for a proxy serving C{maxConnections} connections:
    enough for all of them to arrive at once (a burst of connects must not
    wait for a dropped SYN to be resent, a second later), capped by the
    kernel's limit, which would cap it silently anyway.
    """
    cap = somaxconn()
    backlog = maxConnections if cap is None else min(maxConnections, cap)
    return max(backlog, 1)


_BARE_PORT = re.compile(r"\d+")
_SETS_BACKLOG = re.compile(r"(?:^|(?<!\\):)backlog=")


class _Parsed(Exception):
    """
    How an endpoint would listen, as L{_Recorder} saw it.
    """

    def __init__(self, kind: str, factory: Any, **params: Any) -> None:
        super().__init__(kind)
        self.kind = kind
        self.factory = factory
        self.params = params


class _Placeholder(Factory):
    """
    The factory an endpoint string is parsed with.
    """


@implementer(IReactorTCP, IReactorUNIX, IReactorSSL, IReactorSocket)
class _Recorder:
    """
    A reactor that records the one C{listen} call an endpoint makes, and
    listens nowhere: L{_Parsed} is raised with what was asked.
    """

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        raise _Parsed("tcp", factory, port=port, backlog=backlog, interface=interface)

    def listenSSL(
        self, port: int, factory: Any, contextFactory: Any, backlog: int = 50, interface: str = ""
    ) -> Any:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        # What reactor.listenSSL does: TLS as a protocol wrapper.
        wrapped = TLSMemoryBIOFactory(contextFactory, False, factory)
        raise _Parsed("tcp", wrapped, port=port, backlog=backlog, interface=interface)

    def listenUNIX(
        self, address: str, factory: Any, backlog: int = 50, mode: int = 0o666, wantPID: int = 0
    ) -> Any:
        raise _Parsed("unix", factory, path=address, backlog=backlog, mode=mode)

    def adoptStreamPort(self, fileDescriptor: int, addressFamily: int, factory: Any) -> Any:
        raise _Parsed("adopted", factory, fd=fileDescriptor, family=addressFamily)

    def __getattr__(self, name: str) -> Any:
        raise ValueError("this endpoint type is not supported by twisted-proxy")


def _parse(description: str, factory: Any) -> _Parsed:
    """
    What the endpoint C{description} would listen on, with C{factory}
    wrapped as the endpoint wraps it.

    @raise ValueError: if C{description} is not an endpoint the proxy can
        serve.
    """
    from twisted.internet.endpoints import serverFromString

    try:
        endpoint = serverFromString(_Recorder(), description)
        d = endpoint.listen(factory)
    except _Parsed as parsed:
        return parsed
    except ValueError:
        raise
    except (IndexError, KeyError) as e:
        if description.startswith("systemd:"):
            raise ValueError(
                "systemd passed no such socket (is the service started by a .socket unit, "
                "with LISTEN_FDS set?)"
            ) from None
        raise ValueError(str(e) or e.__class__.__name__) from None
    except Exception as e:  # e.g. an ssl: certificate file that cannot be read
        raise ValueError(str(e) or e.__class__.__name__) from None
    # Endpoints call the reactor inside defer.execute: the recorded call is
    # the Deferred's failure.
    failures: list[Any] = []
    d.addErrback(failures.append)
    if failures and failures[0].check(_Parsed):
        return failures[0].value
    if failures and failures[0].check(ValueError):
        raise failures[0].value
    if failures:
        raise ValueError(failures[0].getErrorMessage())
    raise ValueError("this endpoint type is not supported by twisted-proxy")


_SUPPORTED = (
    "use tcp:PORT, tcp6:PORT, unix:PATH, ssl:PORT:privateKey=...:certKey=..., "
    "haproxy:tcp:PORT, systemd:domain=INET:index=0, or a bare port"
)


class Listener:
    """
    One listening socket.

    @ivar description: the C{--listen} value it comes from.
    @ivar kind: C{"tcp"} (IPv4 or IPv6), C{"unix"}, or C{"adopted"} (a
        socket the process inherited, e.g. from systemd).
    @ivar family: the socket's address family.
    @ivar host: the address to bind (TCP), or L{None}.
    @ivar port: the port to bind (TCP; 0 for any), the port bound once
        bound, or L{None}.
    @ivar path: the socket file (unix), or L{None}.
    @ivar backlog: the backlog the endpoint string sets, or L{None} for the
        proxy's choice.
    @ivar optional: failing to open it is a warning, not an error (the
        IPv6 half of a bare port, on a host without IPv6).
    @ivar socket: the open socket once bound.
    @ivar option: the option it comes from, for messages (C{listen}, or
        C{metrics} for the metrics endpoint).
    """

    socket: socket.socket | None = None
    option = "listen"
    effectiveBacklog: int | None = None
    _address: str | None = None

    def __init__(
        self,
        description: str,
        kind: str,
        family: int,
        *,
        host: str | None = None,
        port: int | None = None,
        path: str | None = None,
        mode: int = 0o666,
        backlog: int | None = None,
        fd: int | None = None,
        optional: bool = False,
    ) -> None:
        self.description = description
        self.kind = kind
        self.family = family
        self.host = host
        self.port = port
        self.path = path
        self.mode = mode
        self.backlog = backlog
        self._fd = fd
        self.optional = optional

    def __repr__(self) -> str:
        return f"<Listener {self.description!r} {self.describe()}>"

    @classmethod
    def parse(cls, description: str) -> list[Listener]:
        """
        The listeners a C{--listen} value makes: one, or for a bare port
        two (IPv4, and IPv6 if the host has it).

        @raise ValueError: saying what is wrong, in words.
        """
        text = description.strip()
        if _BARE_PORT.fullmatch(text):
            port = int(text)
            if port > 65535:
                raise ValueError("a port is 0-65535")
            return [
                cls(text, "tcp", socket.AF_INET, host="0.0.0.0", port=port),
                cls(text, "tcp", socket.AF_INET6, host="::", port=port, optional=True),
            ]
        try:
            parsed = _parse(text, _Placeholder())
        except ValueError as e:
            message = str(e)
            if message.startswith("Unknown endpoint type"):
                message = "unknown endpoint type; " + _SUPPORTED
            elif message.startswith("invalid literal for int()"):
                message = "the port is not a number; " + _SUPPORTED
            raise ValueError(message) from None
        backlog = parsed.params.get("backlog") if _SETS_BACKLOG.search(text) else None
        if backlog is not None and backlog < 1:
            raise ValueError("backlog= must be at least 1")
        if parsed.kind == "tcp":
            port = parsed.params["port"]
            if not 0 <= port <= 65535:
                raise ValueError("a port is 0-65535")
            interface = parsed.params["interface"] or "0.0.0.0"
            family = _addressFamily(interface)
            if family is None:
                raise ValueError(
                    f"interface={interface} is not an IP address; listen on an address "
                    "(interface=127.0.0.1, tcp6:...:interface=\\:\\:1), not a name"
                )
            return [cls(text, "tcp", family, host=interface, port=port, backlog=backlog)]
        if parsed.kind == "unix":
            path = parsed.params["path"]
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                raise ValueError(f"cannot make a socket there: {directory} is not a directory")
            if not os.access(directory, os.W_OK | os.X_OK):
                raise ValueError(
                    f"cannot make a socket there: the directory {directory} is not writable"
                )
            if os.path.exists(path) and not stat.S_ISSOCK(os.stat(path).st_mode):
                raise ValueError(f"{path} exists and is not a socket")
            return [
                cls(
                    text,
                    "unix",
                    socket.AF_UNIX,
                    path=path,
                    mode=parsed.params["mode"],
                    backlog=backlog,
                )
            ]
        return [cls(text, "adopted", parsed.params["family"], fd=parsed.params["fd"])]

    def wrap(self, factory: Any) -> Any:
        """
        The factory to serve this socket with: C{factory}, wrapped as the
        endpoint wraps it (TLS for C{ssl:}, the PROXY protocol for
        C{haproxy:}).
        """
        if _BARE_PORT.fullmatch(self.description.strip()):
            return factory
        wrapped = _parse(self.description, factory).factory
        if isinstance(wrapped, HAProxyWrappingFactory):
            return PeerFirstHAProxyFactory(factory)
        return wrapped

    def bind(self, backlog: int) -> None:
        """
        Open the socket and listen, with C{backlog} unless the endpoint set
        its own.

        @raise ListenError: if the socket cannot be opened.
        """
        if self.socket is not None:
            return
        self.effectiveBacklog = self.backlog if self.backlog is not None else backlog
        if self.kind == "adopted":
            assert self._fd is not None
            self.socket = socket.socket(fileno=os.dup(self._fd))
            self.effectiveBacklog = None
            self._address = _addressText(self.socket.getsockname(), self.family)
            return
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            if self.kind == "unix":
                assert self.path is not None
                _removeStaleSocket(self.path)
                sock.bind(self.path)
                os.chmod(self.path, self.mode)
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if self.family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((self.host, self.port))
            sock.listen(self.effectiveBacklog)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise ListenError(self._why(e), e.strerror or str(e)) from None
        self.socket = sock
        if self.kind == "tcp":
            self.port = sock.getsockname()[1]

    def _why(self, e: OSError) -> str:
        where = self.describe()
        option = self.option
        if option != "listen":
            where += f" for --{option}"
        if e.errno == errno.EADDRINUSE:
            return (
                f"cannot listen on {where}: the address is already in use.  Is another "
                f"{'proxy' if option == 'listen' else 'process'} running there?  Stop it, "
                f"or choose another port with --{option}."
            )
        if e.errno in (errno.EACCES, errno.EPERM) and self.kind == "tcp":
            return (
                f"cannot listen on {where}: permission denied.  Ports below 1024 need root "
                f"or CAP_NET_BIND_SERVICE; choose a port of 1024 or more with --{option}."
            )
        if e.errno == errno.EADDRNOTAVAIL:
            return (
                f"cannot listen on {where}: this host has no such address.  Choose one of "
                "its addresses with interface=, or leave it out to listen on all."
            )
        if e.errno == errno.EAFNOSUPPORT:
            return f"cannot listen on {where}: this host has no IPv6."
        return f"cannot listen on {where}: {e.strerror or e}."

    def describe(self) -> str:
        """
        The address in words: C{127.0.0.1:8080}, C{[::]:8080},
        C{unix:/run/proxy.sock}.
        """
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "adopted":
            return self._address or f"an inherited socket (fd {self._fd})"
        if self.family == socket.AF_INET6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    def adopt(self, reactor: Any, factory: Any) -> Any:
        """
        Serve the bound socket on C{reactor} with C{factory} (wrapped as the
        endpoint says), and close this process's own descriptor of it.

        @return: the L{IListeningPort}.
        """
        assert self.socket is not None, "bind() first"
        port = reactor.adoptStreamPort(self.socket.fileno(), self.family, self.wrap(factory))
        self.socket.close()
        return port

    def fileno(self) -> int:
        assert self.socket is not None
        return self.socket.fileno()

    def close(self) -> None:
        """
        Close the socket, if this process still holds it, and remove a unix
        socket's file.
        """
        if self.socket is None:
            return
        sock, self.socket = self.socket, None
        if sock.fileno() != -1:
            sock.close()
        if self.kind == "unix" and self.path is not None:
            try:
                if stat.S_ISSOCK(os.stat(self.path).st_mode):
                    os.unlink(self.path)
            except OSError:
                pass


def _addressFamily(host: str) -> int | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


def _addressText(address: Any, family: int) -> str:
    if family == socket.AF_INET6:
        return f"[{address[0]}]:{address[1]}"
    if family == socket.AF_INET:
        return f"{address[0]}:{address[1]}"
    return f"unix:{address}"


def _removeStaleSocket(path: str) -> None:
    """
    Remove C{path} if it is a unix socket nobody listens on (left by a
    proxy that did not stop cleanly).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
    except OSError:
        pass
    finally:
        probe.close()


# The --metrics endpoint.

_SEPARATOR = re.compile(r"(?<!\\):")


def _strportFields(description: str) -> tuple[str, list[str], dict[str, str]]:
    """
    Split an endpoint description into its type, positional and keyword
    arguments (C{\\:} escapes a colon).
    """
    parts = [p.replace("\\:", ":") for p in _SEPARATOR.split(description)]
    kind, args, kwargs = parts[0].lower(), [], {}
    for part in parts[1:]:
        name, sep, value = part.partition("=")
        if sep:
            kwargs[name] = value
        else:
            args.append(part)
    return kind, args, kwargs


def metricsEndpoint(description: str) -> str:
    """
    The endpoint description for C{--metrics}: a bare port number listens
    on 127.0.0.1 only (the status page names clients and the URLs they
    fetch), anything else is a Twisted endpoint string.

    @raise ValueError: with a message saying what is wrong.
    """
    from twisted.internet.endpoints import serverFromString

    text = description.strip()
    if text.isdigit():
        text = "tcp:{}:interface=127.0.0.1".format(text)
    try:
        # Parsing needs no reactor; listening happens at start.
        serverFromString(None, text)
    except Exception as e:
        raise ValueError(str(e) or e.__class__.__name__) from None
    kind, args, kwargs = _strportFields(text)
    if kind in ("tcp", "tcp6", "ssl"):
        port = kwargs.get("port", args[0] if args else "")
        if not port.isdigit() or int(port) > 65535:
            raise ValueError("the port must be a number from 0 to 65535")
    return text


def metricsAddress(description: str) -> tuple[str, int] | None:
    """
    The TCP address C{description} (see L{metricsEndpoint}) listens on,
    C{(interface, port)} with C{""} for every interface, or L{None} if it
    is not a TCP endpoint with a fixed port.  Workers use it to refuse
    requests to the parent's metrics endpoint, as a loop.
    """
    kind, args, kwargs = _strportFields(description)
    if kind not in ("tcp", "tcp6", "ssl"):
        return None
    port = kwargs.get("port", args[0] if args else "")
    if not port.isdigit() or not 0 < int(port) <= 65535:
        return None
    interface = kwargs.get("interface", "")
    return interface, int(port)
