"""
C{proxyhistory}: read the proxy's transaction history (JSON Lines written by
L{twisted_proxy.records.logfiles.historyObserver}) and list, summarise or
export it.

    proxyhistory [filters] FILE...                 one aligned line each
    proxyhistory [filters] --summary FILE...       totals and latency table
    proxyhistory [filters] --har OUT.har FILE...   HTTP Archive 1.2
    proxyhistory [filters] --json FILE...          the records, JSON Lines

FILEs may be rotated files and gzip-compressed files (recognised by their
content, whatever their name).  Records are shown in order of their start
(request head received, or connection accepted), whatever file they came
from.  A line that is not a record is reported on stderr with its file and
line number, and skipped.

Exit status: 0 on success, 2 for a usage error, 1 if a file could not be
read (or the HAR file written); what could be read is still shown.

Only the record format documented in L{twisted_proxy.records.record} is
read.  The modules, in the order a run uses them: L{read} (files to
records), L{filters} (the selection options), L{listing}, L{summary} and
L{har} (the outputs), L{main} (the command line).
"""
