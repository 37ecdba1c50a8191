# -*- test-case-name: tests.test_client_main -*-
"""
The C{proxyclient} program: L{runClient} is all of it with the outside
world injected (L{Environment}); L{main} is what
L{twisted.internet.task.react} runs, and L{run} is the console script.

Only L{run} touches the global reactor.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python import usage

from twisted_proxy.http.target import Target

from .address import TargetError, parseTarget
from .config import Environment, configure
from .errors import EXIT_USAGE
from .options import Exit, Options
from .report import JSONReporter, TextReporter
from .session import Reporter, Session, exitCode

__all__ = ["PROMPT", "prompt", "runClient", "main", "run"]

PROMPT = "Enter the website's IP: "


def prompt(env: Environment, out: TextIO) -> Target | None:
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
    @return: the exit code.
    """
    options = Options()
    try:
        options.parseOptions(list(argv))
    except Exit as e:
        env.stdout.write(e.text)
        return e.code
    except usage.UsageError as e:
        env.stderr.write("proxyclient: {}\nTry 'proxyclient --help'.\n".format(e))
        return EXIT_USAGE
    if options["target"] is None:
        try:
            target = prompt(env, env.stderr if options["json"] else env.stdout)
        except KeyboardInterrupt:
            env.stdout.write("\n")
            return 130
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

    reporter: Reporter = Reporter()
    session = Session(config, env, reporter)
    if config.json:
        session.reporter = JSONReporter(config, env.stdout, env.stderr, session)
    else:
        session.reporter = TextReporter(config, env.stdout, env.stderr)
    runs = await session.run()
    session.reporter.finished(runs, session.mac, session.connections)
    return exitCode(runs)


def main(reactor: Any, *argv: str) -> Deferred[None]:
    """
    The C{main} that L{twisted.internet.task.react} runs: L{runClient} on
    the real standard streams and environment.  A non-zero exit code ends
    the program through L{SystemExit}.
    """
    env = Environment(
        reactor=reactor,
        stdin=sys.stdin,
        stdout=sys.stdout,
        stderr=sys.stderr,
        environ=os.environ,
    )

    def exit(code: int) -> None:
        if code:
            raise SystemExit(code)

    return ensureDeferred(runClient(env, argv)).addCallback(exit)


def run() -> None:
    """
    The C{proxyclient} console script.
    """
    from twisted.internet.task import react  # it runs the global reactor

    react(main, sys.argv[1:])

