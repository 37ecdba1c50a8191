# -*- test-case-name: tests.test_client_main -*-
"""
C{proxyclient}: send an HTTP request through an HTTP proxy, time it, and
report the MAC address of the interface that carried it.

The brief's client, on Twisted::

    Enter the website's IP: 93.184.216.34
    Request has been sent: GET http://93.184.216.34/ HTTP/1.1\\r\\n...  [12:34:56.123]
    Response has been received: HTTP/1.1 200 OK\\r\\n...  [12:34:56.357]
    Round-trip time: 0.234 seconds
    Physical MAC Address: aa:bb:cc:dd:ee:ff (eth0)

The modules, from the bottom up:

  - L{address}: what a user types made into the target, the project's
    one L{twisted_proxy.http.target.Target}.
  - L{proxies}: which proxy, which credentials, or none (C{no_proxy}), as
    curl decides.
  - L{mac}: the MAC address of the interface that carried the connection.
  - L{options}: the command line; L{config}: the validated invocation and
    the request head.
  - L{network}: name resolution as its own phase, and connections made
    when asked for (L{network.ConnectNowEndpoint}); L{sendnow}: writes that
    reach the kernel when they are made.
  - L{wire}: the protocols on the connection to the proxy (plain HTTP, or
    a C{CONNECT} tunnel with TLS over it).
  - L{runs}: one measured request, its phases and exit code;
    L{session}: runs the requests and takes the marks.
  - L{report}: the text and JSON output; L{stats}: the statistics of
    repeated runs.
  - L{errors}: one-line messages and the exit codes.
  - L{main}: L{runClient}, C{main} (what L{react} runs) and the console
    script L{run}.

Nothing here imports the proxy's own modules, and only L{run} touches the
global reactor.
"""

from .address import TargetError, parseTarget
from .config import Environment
from .errors import proxyErrorOf
from .mac import MacAddress, findMacAddress
from .main import PROMPT, run, runClient
from .options import USER_AGENT, Options
from .proxies import NoProxy, parseProxyURL
from .report import bodyPreview
from .stats import nearestRankPercentile, summarize

__all__ = [
    "PROMPT",
    "USER_AGENT",
    "TargetError",
    "parseTarget",
    "parseProxyURL",
    "NoProxy",
    "MacAddress",
    "findMacAddress",
    "nearestRankPercentile",
    "summarize",
    "bodyPreview",
    "proxyErrorOf",
    "Options",
    "Environment",
    "runClient",
    "run",
]
