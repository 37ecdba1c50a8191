# -*- test-case-name: tests.test_client_main -*-
"""
The C{proxyclient} program: L{runClient} is all of it with the outside
world injected (L{Environment}); L{main} is what
L{twisted.internet.task.react} runs, and L{run} is the console script.

Only L{run} touches the global reactor; only L{main} and L{run} touch the
process (signals, the standard streams, how it ends).
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python import usage

from twisted_proxy.http.target import Target

from .address import TargetError, parseTarget
from .config import Environment, configure
from .errors import EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED, EXIT_USAGE
from .options import Exit, Options
from .report import JSONReporter, TextReporter
from .runs import exitCode
from .session import Reporter, Session

__all__ = ["PROMPT", "GuardedOutput", "prompt", "runClient", "main", "run"]

PROMPT = "Enter the website's IP: "


class GuardedOutput:
    """
    The standard output, as the client writes it: when the reader has gone
    (C{proxyclient ... | head -1}), the first write that fails with
    C{EPIPE} calls C{onClosed} once, and every write after it is dropped,
    so the program can stop quietly instead of dying in a traceback.

    @ivar closed: whether the reader has gone.
    """

    closed = False

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._onClosed: list[Callable[[], None]] = []

    def whenClosed(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} when the reader goes (at once if it has).
        """
        if self.closed:
            callback()
        else:
            self._onClosed.append(callback)

    def _guard(self, operation: Callable[..., object], *args: Any) -> None:
        if self.closed:
            return
        try:
            operation(*args)
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.EBADF):
                raise
            self.closed = True
            callbacks, self._onClosed = self._onClosed, []
            for callback in callbacks:
                callback()

    def write(self, text: str) -> None:
        self._guard(self._stream.write, text)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def isatty(self) -> bool:
        isatty = getattr(self._stream, "isatty", None)
        return bool(isatty and isatty())


def prompt(env: Environment, out: Any) -> Target | None:
    """
    Ask for the target until a valid one is typed (interactive) or once
    (input from a pipe or file); L{None} at the end of input or on a bad
    address that cannot be asked again.
    """
    while True:
        out.write(PROMPT)
        out.flush()
        line = env.stdin.readline()
        if not line:
            out.write("\n")
            env.stderr.write("proxyclient: no address given.\n")
            return None
        if not env.interactive:
            out.write(line if line.endswith("\n") else line + "\n")
        try:
            return parseTarget(line)
        except TargetError as e:
            env.stderr.write("proxyclient: {}\n".format(e))
            env.stderr.flush()
            if not env.interactive:
                return None


async def runClient(env: Environment, argv: Sequence[str]) -> int:
    """
    The whole program, with the outside world in C{env}.

    @param argv: the arguments, without the program name.
    @return: the exit code: see L{twisted_proxy.client.errors}.
    """
    out = GuardedOutput(env.stdout)
    options = Options()
    try:
        options.parseOptions(list(argv))
    except Exit as e:
        out.write(e.text)
        out.flush()
        return EXIT_OUTPUT_CLOSED if out.closed else e.code
    except usage.UsageError as e:
        env.stderr.write("proxyclient: {}\nTry 'proxyclient --help'.\n".format(e))
        return EXIT_USAGE
    try:
        if options["target"] is None:
            target = prompt(env, env.stderr if options["json"] else out)
            if target is None:
                return EXIT_USAGE
        else:
            try:
                target = parseTarget(options["target"])
            except TargetError as e:
                env.stderr.write("proxyclient: {}\n".format(e))
                return EXIT_USAGE
        try:
            config = configure(options, env, target)
        except usage.UsageError as e:
            env.stderr.write("proxyclient: {}\n".format(e))
            return EXIT_USAGE
    except KeyboardInterrupt:
        # Ctrl-C at the prompt or the password question: nothing was sent.
        out.write("\n")
        out.flush()
        return EXIT_INTERRUPTED

    reporter: Reporter = Reporter()
    session = Session(config, env, reporter)
    if config.json:
        session.reporter = JSONReporter(config, out, env.stderr, session)
    else:
        session.reporter = TextReporter(config, out, env.stderr, env.wallClock)
    out.whenClosed(session.outputClosed)
    uninstall = env.interrupts(session.interrupt) if env.interrupts is not None else None
    try:
        runs = await session.run()
        session.reporter.finished(runs, session.mac, session.connections)
    finally:
        if uninstall is not None:
            uninstall()
        if config.output is not None:
            config.output.close()
    return EXIT_OUTPUT_CLOSED if out.closed else exitCode(runs)


def _sigintHandlers(reactor: Any) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """
    The real L{Environment.interrupts}: while the requests run, Ctrl-C
    calls the callback in the reactor's thread (the session then ends the
    run and says it was interrupted); a second Ctrl-C ends the process at
    once with code 130.
    """

    def install(callback: Callable[[], None]) -> Callable[[], None]:
        pressed: list[int] = []

        def onSigint(signum: int, frame: object) -> None:
            if pressed:
                os._exit(EXIT_INTERRUPTED)
            pressed.append(signum)
            reactor.callFromThread(callback)

        previous = signal.signal(signal.SIGINT, onSigint)

        def uninstall() -> None:
            signal.signal(signal.SIGINT, previous)

        return uninstall

    return install


def main(reactor: Any, *argv: str, exitCodes: list[int] | None = None) -> Deferred[None]:
    """
    The C{main} that L{twisted.internet.task.react} runs: L{runClient} on
    the real standard streams and environment, once the reactor is running
    (L{react} calls C{main} before it starts the reactor, whose start-up
    would otherwise run in the middle of the first, timed, connection).  A
    non-zero exit code ends the program through L{SystemExit}.

    Ctrl-C at the prompt raises L{KeyboardInterrupt} there (Python's own
    handler, instead of the reactor's, which would only stop the reactor
    once the prompt returns); while the requests run it is the session's.

    @param exitCodes: if given, the exit code is appended to it too.
    """
    env = Environment(
        reactor=reactor,
        stdin=sys.stdin,
        stdout=sys.stdout,
        stderr=sys.stderr,
        environ=os.environ,
        interrupts=_sigintHandlers(reactor),
        quietCollector=True,
    )

    def start() -> Deferred[int]:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return ensureDeferred(runClient(env, argv))

    def exit(code: int) -> None:
        if exitCodes is not None:
            exitCodes.append(code)
        if code:
            raise SystemExit(code)

    started: Deferred[int] = Deferred()
    reactor.callWhenRunning(lambda: start().chainDeferred(started))
    return started.addCallback(exit)


def _endBySIGPIPE() -> None:
    """
    End as coreutils do when their reader has gone: silently, killed by
    SIGPIPE (the shell reports status 141).  Standard output is first
    pointed at /dev/null, so that nothing tries to flush into the closed
    pipe on the way out.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    # Not reached where SIGPIPE exists; elsewhere, the same number.
    raise SystemExit(EXIT_OUTPUT_CLOSED)  # pragma: no cover


def run() -> None:
    """
    The C{proxyclient} console script.
    """
    from twisted.internet.task import react  # it runs the global reactor

    codes: list[int] = []
    try:
        react(functools.partial(main, exitCodes=codes), sys.argv[1:])
    except SystemExit:
        if codes == [EXIT_OUTPUT_CLOSED]:
            _endBySIGPIPE()
        raise
