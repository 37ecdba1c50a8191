# -*- test-case-name: tests.test_history -*-
"""
Emitting log events on the hot path: L{emitEvent} (the brief's lines and
every other per-request event) and L{emitTransaction} (one event per
finished transaction, which the history and access-log observers write).

Both build the event C{Logger.info} would build, and hand it straight to
the logger's observer: what C{Logger.emit} costs per call (a level check
that sorts the level constants, and for a class-attribute logger a new
L{Logger} per attribute access) is paid once per request by the proxy, and
it matters there.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.logger import Logger, LogLevel

from .record import TransactionRecord

__all__ = ["emitEvent", "emitTransaction"]


def emitEvent(log: Logger, fmt: str, fields: dict[str, Any], source: object = None) -> None:
    """
    Emit an C{info} event on C{log}: the same event C{log.info(fmt,
    **fields)} would build, without what that costs per call on a hot path.

    @param fields: the event's fields; this dict becomes the event.
    @param source: the event's C{log_source} (default: C{log.source}).
    """
    fields["log_logger"] = log
    fields["log_level"] = LogLevel.info
    fields["log_namespace"] = log.namespace
    fields["log_source"] = log.source if source is None else source
    fields["log_format"] = fmt
    fields["log_time"] = time.time()
    log.observer(fields)


def emitTransaction(
    log: Logger, record: TransactionRecord, redact: bool = True, detail: bool = True
) -> None:
    """
    Finish C{record} and emit it: one C{info} event on C{log} with the
    fields C{client}, C{method}, C{target}, C{status}, C{bytes} (sent to the
    client), C{ms} (total) and C{record} (the L{TransactionRecord} itself,
    for in-process observers such as the metrics, which read a few of its
    attributes instead of paying for the dict; it does not survive
    serialisation to JSON), and, if C{detail}, the record's dict in
    C{"transaction"} (what the history and access-log observers write, and
    what workers send their parent).

    The event has an empty C{log_format}: text observers (the console) do
    not print it, since the brief's lines already tell the story there, and
    do not pay for formatting it.

    Building the record's dict is most of the cost of a record (about ten
    times the summary event: C{bench/records_cost.py}), so it is built only
    when something reads it: the server passes C{detail} only when history,
    access log or workers consume the events, and then builds it once for
    all of them.

    A record is emitted once: calling this again for the same record does
    nothing, so a transaction that both completes and then sees its
    connection lost is not counted twice.

    @param log: the logger to emit on.
    @param record: the finished transaction.
    @param redact: redact header values by the proxy's one rule (pass
        L{False} only for C{--history-headers=all}).
    @param detail: attach the full record as C{"transaction"}.
    """
    if not record.markEmitted():
        return
    record.finish()
    fields: dict[str, Any] = {
        "record": record,
        "client": (record.clientHost, record.clientPort),
        "method": record.method,
        "target": record.target,
        "status": record.status,
        "bytes": record.bytesToClient,
        "ms": record.total(),
    }
    if detail:
        fields["transaction"] = record.asDict(redact)
    emitEvent(log, "", fields)
