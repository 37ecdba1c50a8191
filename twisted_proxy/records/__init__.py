"""
Transaction records and where they go.

  - L{record}: L{record.TransactionRecord}, what happened in one
    transaction (phases on two clocks, durations, the JSON-ready dict and its
    documented format).
  - L{emit}: the log events the server emits on its hot path, one per
    finished transaction among them.
  - L{logfiles}: the observers writing the history (JSON Lines) and the
    access log: buffered, rotated between records, reopened on C{SIGUSR1}.
  - L{accesslog}: the access-log formats (Squid, common, combined).
  - L{stats}: L{stats.percentile}, the one definition of a percentile.
  - L{units}: L{units.parseSize}, sizes in option values (C{10M}).

This layer imports only L{twisted_proxy.http}, and nothing from
C{twisted.internet}: the clock that drives buffered writes is passed in.
"""
