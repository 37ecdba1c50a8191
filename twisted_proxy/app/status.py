# -*- test-case-name: tests.test_metrics_status -*-
"""
The C{--metrics} endpoint's web resources (L{statusSite}):

  - C{/}: the status page, for people: plain HTML and CSS, no script,
    refreshed by a C{meta} refresh every few seconds (C{?refresh=0} stops
    it, C{?refresh=N} sets it);
  - C{/metrics}: the Prometheus exposition of the L{Monitor}'s registry
    (text format 0.0.4, or OpenMetrics when the scraper asks for it;
    gzip when accepted);
  - C{/healthz}: C{200 ok} or C{503 draining}.

Everything on the page that came from a request (targets, users, client
addresses, error types) is HTML-escaped; credentials in URLs and the
values of query parameters that look secret are replaced by
C{<redacted>}; the configuration summary leaves secrets out (a parent
proxy's credentials show as C{<credentials>}).  The page is served with a
Content-Security-Policy that allows no script at all, so an escaping
mistake could not run one either.
"""

from __future__ import annotations

import gzip
import html
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.exposition import choose_encoder
from twisted.web import http
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

if TYPE_CHECKING:
    from .metrics import Histogram, Monitor

__all__ = [
    "configurationSummary",
    "redactTarget",
    "renderStatusPage",
    "statusSite",
]

DEFAULT_REFRESH = 5
"""
Seconds between the status page's refreshes.
"""

_SECURITY_HEADERS = (
    # No script, no frames, no external loads; inline CSS only.
    (
        b"Content-Security-Policy",
        b"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
        b"frame-ancestors 'none'",
    ),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"Cache-Control", b"no-store"),
)


def _secure(request: Request) -> None:
    for name, value in _SECURITY_HEADERS:
        request.setHeader(name, value)


class HealthResource(Resource):
    """
    C{/healthz}: C{200 ok} while the proxy accepts connections, C{503
    draining} once it stops (for load balancers and orchestrators).
    """

    isLeaf = True

    def __init__(self, monitor: Monitor) -> None:
        super().__init__()
        self.monitor = monitor

    def render_GET(self, request: Request) -> bytes:
        _secure(request)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        if self.monitor.health.draining:
            request.setResponseCode(503)
            return b"draining\n"
        return b"ok\n"


class MetricsResource(Resource):
    """
    C{/metrics}: the registry in the format the scraper asks for, built in
    the reactor thread (the collectors read the live factory, which only
    that thread may touch).
    """

    isLeaf = True

    def __init__(self, monitor: Monitor) -> None:
        super().__init__()
        self.monitor = monitor

    def render_GET(self, request: Request) -> bytes:
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encoder, contentType = choose_encoder(accept)
        output = encoder(self.monitor.registry)
        request.setHeader(b"Content-Type", contentType.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        acceptEncoding = (request.getHeader(b"accept-encoding") or b"").decode("latin-1").lower()
        if "gzip" in [part.split(";")[0].strip() for part in acceptEncoding.split(",")]:
            output = gzip.compress(output, compresslevel=6)
            request.setHeader(b"Content-Encoding", b"gzip")
        request.setHeader(b"Vary", b"Accept, Accept-Encoding")
        return output


class StatusPage(Resource):
    """
    C{/}: the status page (L{renderStatusPage}).
    """

    isLeaf = True

    def __init__(self, monitor: Monitor) -> None:
        super().__init__()
        self.monitor = monitor

    def render_GET(self, request: Request) -> bytes:
        refresh = DEFAULT_REFRESH
        values = request.args.get(b"refresh")
        if values:
            try:
                refresh = max(0, min(3600, int(values[0])))
            except ValueError:
                pass
        _secure(request)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return renderStatusPage(self.monitor, refresh)


class MetricsSite(Site):
    """
    The endpoint's site (named for the console's "MetricsSite starting on
    PORT" line).  It writes no access-log line per request: a scraper every
    15 seconds would fill the proxy's console.
    """

    noisy = False
    displayTracebacks = False

    def log(self, request: http.Request) -> None:
        pass


class _Root(Resource):
    def getChild(self, path: bytes, request: Request) -> Any:
        return notFound("Not found", "Try /, /metrics or /healthz.")


def statusSite(monitor: Monitor, reactor: Any) -> Site:
    """
    The endpoint's web site: C{/}, C{/metrics}, C{/healthz}; anything else
    is 404.
    """
    root = _Root()
    root.putChild(b"", StatusPage(monitor))
    root.putChild(b"metrics", MetricsResource(monitor))
    root.putChild(b"healthz", HealthResource(monitor))
    return MetricsSite(root, reactor=reactor)


# Text.

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@]*@")
_SECRET_PARAMETER = re.compile(
    r"([?&;][^=&;#]*(?:pass|pwd|secret|token|key|auth|sig|session|credential|code)"
    r"[^=&;#]*=)[^&;#]*",
    re.IGNORECASE,
)
_CONTROLS = {c: "\ufffd" for c in list(range(32)) + [127]}


def redactTarget(target: str) -> str:
    """
    A request target fit to show: the userinfo of a URL
    (C{http://user:password@host/}) and the values of query parameters
    whose names look secret (C{password}, C{token}, C{api_key}, C{sig},
    C{session}, ...) replaced by C{<redacted>}.
    """
    text = _USERINFO.sub(r"\1<redacted>@", target)
    return _SECRET_PARAMETER.sub(r"\1<redacted>", text)


def _text(value: object, limit: int | None = None) -> str:
    """
    C{value} as escaped HTML text, control characters replaced, cut to
    C{limit} characters (with an ellipsis).
    """
    text = "" if value is None else str(value)
    text = text.translate(_CONTROLS)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return html.escape(text, quote=True)


def _count(n: float) -> str:
    return "{:,}".format(int(n))


def _bytes(n: float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return "{:.{}f} {}".format(value, 0 if unit == "B" else 1, unit)
        value /= 1024
    raise AssertionError("unreachable")


def _ms(ms: float | None) -> str:
    if ms is None:
        return "\u2013"
    if ms < 1:
        return "{:.2f} ms".format(ms)
    if ms < 1000:
        return "{:.1f} ms".format(ms) if ms < 100 else "{:.0f} ms".format(ms)
    return "{:.2f} s".format(ms / 1000)


def _seconds(s: float | None) -> str:
    return _ms(None if s is None else s * 1000)


def _uptime(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return "{} d {} h".format(days, hours)
    if hours:
        return "{} h {} min".format(hours, minutes)
    if minutes:
        return "{} min {} s".format(minutes, s)
    return "{} s".format(s)


def _clock(when: float) -> str:
    """
    C{HH:MM:SS.mmm} in UTC.
    """
    t = time.gmtime(when)
    return "{:02d}:{:02d}:{:02d}.{:03d}".format(
        t.tm_hour, t.tm_min, t.tm_sec, int((when % 1) * 1000)
    )


def _statusPill(status: object) -> str:
    if type(status) is int:
        return '<span class="st s{}">{}</span>'.format(min(max(status // 100, 1), 5), status)
    return '<span class="st s0">\u2013</span>'


# The page.

_STYLE = """
:root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#f4f5f7;--card:#fff;
--ok:#067647;--okbg:#ecfdf3;--warn:#b54708;--warnbg:#fffaeb;--bad:#b42318;--badbg:#fef3f2;
--info:#175cd3;--infobg:#eff8ff}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:var(--bg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#101828;color:#fff;padding:14px 28px;display:flex;align-items:center;gap:14px;
flex-wrap:wrap}
header h1{font-size:19px;margin:0;font-weight:650;letter-spacing:-.01em}
header h1 small{color:#98a2b3;font-weight:400;font-size:13px;margin-left:8px}
.badge{padding:2px 10px;border-radius:999px;font-size:12px;font-weight:650}
.badge.ok{background:#12b76a;color:#fff}.badge.draining{background:#f79009;color:#fff}
header .meta{color:#d0d5dd;margin-left:auto;font-size:13px}
main{padding:20px 28px 28px;max-width:1440px;margin:0 auto}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin-bottom:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:11px 14px}
.card .label{color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.05em;
white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.card .value{font-size:23px;font-weight:650;font-variant-numeric:tabular-nums;margin-top:1px}
.card .sub{color:var(--muted);font-size:12px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;
margin-bottom:16px;overflow-x:auto}
h2{font-size:14.5px;margin:0 0 10px;font-weight:650}
h2 .muted{font-weight:400;font-size:12.5px}
.row{display:grid;grid-template-columns:repeat(auto-fit,minmax(330px,1fr));gap:16px;margin-bottom:16px}
.row section{margin-bottom:0}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);white-space:nowrap}
th{color:var(--muted);font-weight:600;font-size:11.5px;text-transform:uppercase;letter-spacing:.04em;
background:#fcfcfd}
td.num,th.num{text-align:right}
td.target{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;
font-size:12.5px;max-width:560px;overflow:hidden;text-overflow:ellipsis}
tbody tr:nth-child(even){background:#fafbfc}
tbody tr:last-child td{border-bottom:none}
.st{display:inline-block;min-width:38px;text-align:center;padding:1px 6px;border-radius:6px;
font-weight:650;font-size:12px}
.s1,.s3{background:var(--infobg);color:var(--info)}.s2{background:var(--okbg);color:var(--ok)}
.s4{background:var(--warnbg);color:var(--warn)}.s5{background:var(--badbg);color:var(--bad)}
.s0{background:#f2f4f7;color:var(--muted)}
.bar{height:8px;background:#eaecf0;border-radius:4px;overflow:hidden;min-width:140px}
.bar span{display:block;height:100%;background:#2e90fa}
dl{display:grid;grid-template-columns:max-content 1fr;gap:5px 18px;margin:0}
dt{color:var(--muted)}dd{margin:0;word-break:break-word}
.muted{color:var(--muted)}.err{color:var(--bad)}.tag{color:var(--muted);font-size:12px}
.empty{color:var(--muted);padding:8px 0}
footer{color:var(--muted);font-size:12px;text-align:center;padding:4px 0 20px}
a{color:var(--info);text-decoration:none}a:hover{text-decoration:underline}
"""


def _card(label: str, value: str, sub: str = "") -> str:
    return (
        '<div class="card"><div class="label">{}</div><div class="value">{}</div>'
        '<div class="sub">{}</div></div>'.format(label, value, sub or "&nbsp;")
    )


def _latencyRow(name: str, histogram: Histogram | None) -> str:
    count = histogram.count if histogram is not None else 0
    cells: list[float | None]
    if histogram is None or not count:
        cells = [None] * 4
    else:
        cells = [
            histogram.quantile(0.5),
            histogram.quantile(0.9),
            histogram.quantile(0.99),
            histogram.sum / count,
        ]
    return (
        "<tr><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>"
        "<td class=num>{}</td><td class=num>{}</td></tr>".format(
            name, _count(count), *(_seconds(cell) for cell in cells)
        )
    )


def _countTable(title: str, column: str, counts: Mapping[str, int], empty: str) -> str:
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if not rows:
        body = '<div class="empty">{}</div>'.format(empty)
    else:
        body = (
            "<table><thead><tr><th>{}</th><th class=num>Count</th></tr></thead><tbody>{}"
            "</tbody></table>".format(
                column,
                "".join(
                    "<tr><td>{}</td><td class=num>{}</td></tr>".format(_text(k, 100), _count(v))
                    for k, v in rows[:20]
                ),
            )
        )
    return "<section><h2>{}</h2>{}</section>".format(title, body)


def renderStatusPage(monitor: Monitor, refresh: int = DEFAULT_REFRESH) -> bytes:
    """
    The status page for C{monitor}, as UTF-8 HTML.

    @param refresh: seconds between reloads (0: no reload).
    """
    stats = monitor.stats
    gauges = monitor.gauges()
    now = monitor.wallClock()
    draining = monitor.health.draining
    parts: list[str] = []
    add = parts.append
    add('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">')
    if refresh:
        add('<meta http-equiv="refresh" content="{}">'.format(refresh))
    add('<meta name="viewport" content="width=device-width, initial-scale=1">')
    add("<title>twisted-proxy \u00b7 {}</title>".format(_text(monitor.pseudonym)))
    add("<style>{}</style></head><body>".format(_STYLE))

    add("<header><h1>twisted-proxy<small>{}</small></h1>".format(_text(monitor.version)))
    add(
        '<span class="badge {}">{}</span>'.format(
            "draining" if draining else "ok", "Draining" if draining else "Accepting"
        )
    )
    add(
        '<span class="meta">{} \u00b7 up {} \u00b7 {} UTC{}</span></header>'.format(
            _text(monitor.pseudonym),
            _uptime(monitor.uptime()),
            _text(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))),
            " \u00b7 refreshes every {} s".format(refresh) if refresh else "",
        )
    )
    add("<main>")

    # Live counters.
    classes = stats.statusClasses()
    errors = sum(stats.errors.values())
    add('<div class="cards">')
    add(_card("Requests", _count(stats.total), "{:.1f}/s, last minute".format(stats.rate(now))))
    add(
        _card(
            "Connections",
            _count(gauges.get("clientConnections", 0)),
            "{} handling a request".format(_count(gauges.get("activeRequests", 0))),
        )
    )
    add(_card("Tunnels", _count(gauges.get("tunnels", 0)), "CONNECT and upgrades"))
    reuse = stats.newConnections + stats.reusedConnections
    add(
        _card(
            "Upstream pool",
            "{} idle".format(_count(gauges.get("idleUpstreamConnections", 0))),
            "{:.0f}% reused ({} of {})".format(
                100.0 * stats.reusedConnections / reuse,
                _count(stats.reusedConnections),
                _count(reuse),
            )
            if reuse
            else "no upstream request yet",
        )
    )
    refused = sum(stats.refusals.values())
    add(_card("Errors", _count(errors), "{} refused by policy".format(_count(refused))))
    add(
        _card(
            "Client traffic",
            _bytes(stats.clientOut),
            "sent; {} received".format(_bytes(stats.clientIn)),
        )
    )
    add(
        _card(
            "Upstream traffic",
            _bytes(stats.upstreamIn),
            "received; {} sent".format(_bytes(stats.upstreamOut)),
        )
    )
    if "cache.hits" in gauges or "cache.misses" in gauges:
        hits, misses = gauges.get("cache.hits", 0), gauges.get("cache.misses", 0)
        add(
            _card(
                "Cache hits",
                "{:.0f}%".format(100.0 * hits / (hits + misses)) if hits + misses else "\u2013",
                "{} hits, {} misses".format(_count(hits), _count(misses)),
            )
        )
    if monitor.workers > 1:
        add(
            _card(
                "Workers",
                "{} / {}".format(_count(gauges.get("workers", 0)), monitor.workers),
                "reporting",
            )
        )
    add("</div>")

    # Responses and latency.
    add(
        '<div class="row"><section><h2>Responses</h2><table><thead><tr><th>Status</th>'
        "<th class=num>Count</th><th class=num>Share</th><th></th></tr></thead><tbody>"
    )
    total = stats.total
    for name in ("1xx", "2xx", "3xx", "4xx", "5xx", "none"):
        count = classes.get(name, 0)
        if not count and name in ("1xx", "none"):
            continue
        share = 100.0 * count / total if total else 0.0
        add(
            "<tr><td>{}</td><td class=num>{}</td><td class=num>{:.1f}%</td>"
            '<td><div class="bar"><span style="width:{:.1f}%"></span></div></td></tr>'.format(
                "no response" if name == "none" else name, _count(count), share, share
            )
        )
    add("</tbody></table></section>")
    add(
        '<section><h2>Latency <span class="muted">estimated from the histograms</span></h2>'
        "<table><thead><tr><th></th><th class=num>Count</th><th class=num>p50</th>"
        "<th class=num>p90</th><th class=num>p99</th><th class=num>Mean</th></tr></thead><tbody>"
    )
    add(_latencyRow("Request (http)", stats.durations.get("http")))
    add(_latencyRow("Time to first byte", stats.firstByte))
    add(_latencyRow("Upstream connect", stats.upstreamConnect))
    tunnels = stats.durations.get("tunnel")
    if tunnels is not None:
        add(_latencyRow("Tunnel lifetime", tunnels))
    add("</tbody></table></section></div>")

    # The last transactions.
    recent = stats.recent
    recent.reverse()
    add(
        '<section><h2>Last {} transactions <span class="muted">newest first</span></h2>'.format(
            len(recent)
        )
    )
    if not recent:
        add('<div class="empty">No transaction yet.</div>')
    else:
        add(
            "<table><thead><tr><th>Time (UTC)</th><th>Client</th><th>Method</th><th>Target</th>"
            "<th>Status</th><th class=num>Sent</th><th class=num>First byte</th>"
            "<th class=num>Total</th><th>Note</th></tr></thead><tbody>"
        )
        for t in recent:
            target = redactTarget(str(t.target)) if t.target is not None else ""
            notes = []
            if t.error:
                notes.append('<span class="err">{}</span>'.format(_text(t.error, 60)))
            if t.aborted:
                notes.append('<span class="err">aborted</span>')
            if t.kind not in ("http", "refused"):
                notes.append('<span class="tag">{}</span>'.format(_text(t.kind)))
            if t.cacheStatus:
                notes.append('<span class="tag">cache {}</span>'.format(_text(t.cacheStatus, 20)))
            if t.user:
                notes.append('<span class="tag">user {}</span>'.format(_text(t.user, 40)))
            add(
                '<tr><td>{}</td><td>{}</td><td>{}</td><td class="target" title="{}">{}</td>'
                "<td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>"
                "<td>{}</td></tr>".format(
                    _clock(t.when),
                    _text(t.client, 45),
                    _text(t.method if t.method is not None else "\u2013", 16),
                    _text(target, 2000),
                    _text(target, 110),
                    _statusPill(t.status),
                    _bytes(t.bytesOut),
                    _seconds(t.firstByte),
                    _seconds(t.total),
                    " ".join(notes),
                )
            )
        add("</tbody></table>")
    add("</section>")

    # Errors, refusals, configuration.
    add('<div class="row">')
    add(_countTable("Errors by Proxy-Status type", "Error", stats.errors, "No error."))
    add(_countTable("Refusals by rule", "Rule", stats.refusals, "No request refused."))
    add("</div>")
    add("<section><h2>Configuration</h2><dl>")
    for label, value in monitor.summary():
        add("<dt>{}</dt><dd>{}</dd>".format(_text(label), _text(value)))
    add("</dl></section>")
    add(
        '</main><footer><a href="/metrics">/metrics</a> \u00b7 <a href="/healthz">/healthz</a>'
        ' \u00b7 <a href="/?refresh={}">{}</a></footer></body></html>\n'.format(
            0 if refresh else DEFAULT_REFRESH,
            "stop refreshing" if refresh else "refresh every {} s".format(DEFAULT_REFRESH),
        )
    )
    return "".join(parts).encode("utf-8")


# The configuration, as the page shows it.


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    return "{:g} s".format(seconds)


def configurationSummary(options: Mapping[str, Any], config: Any) -> list[tuple[str, str]]:
    """
    The configuration in force, in words, for the status page: C{(label,
    text)} pairs.  Secrets are left out: a parent proxy's credentials show
    as C{<credentials>}, password files by path only.

    @param options: the settings in force, setting name to value
        (listening endpoints, workers, log files, the metrics endpoint).
    @param config: the L{ProxyConfig} in force.
    """
    rows: list[tuple[str, str]] = []
    ports = options.get("listen") or []
    rows.append(("Listening on", ", ".join(str(p) for p in ports) or "\u2013"))
    workers = options.get("workers") or 1
    rows.append(("Processes", "this one" if workers == 1 else "{} workers".format(workers)))
    rows.append(("Pseudonym", config.pseudonym))
    rows.append(("Access policy", config.policy.describe()))
    parent = config.parent
    if parent is None:
        rows.append(("Upstream", "direct"))
    else:
        rows.append(("Upstream", "parent proxy " + parent.describe()))
    perClient = config.maxConnectionsPerClient
    rows.append(
        (
            "Connections",
            "at most {} ({} per client)".format(
                config.maxConnections, "no limit" if perClient is None else perClient
            ),
        )
    )
    rows.append(
        (
            "Request body limit",
            "none" if config.maxBody is None else "{} bytes".format(config.maxBody),
        )
    )
    rows.append(
        (
            "Timeouts",
            "connect {}, response {}, idle {}, header {}, body {}, tunnel idle {}".format(
                _duration(config.connectTimeout),
                _duration(config.responseTimeout),
                _duration(config.idleTimeout),
                _duration(config.headerTimeout),
                _duration(config.bodyTimeout),
                _duration(config.tunnelIdleTimeout),
            ),
        )
    )
    rows.append(
        (
            "Upstream pool",
            "at least {} idle per destination, kept {}".format(
                config.poolMinIdlePerHost, _duration(config.poolIdleTimeout)
            ),
        )
    )
    rows.append(("Forwarded header", config.forwarded))
    if config.cacheDir is not None:
        cache = "on disk in {}, {} bytes".format(config.cacheDir, config.cacheDiskSize)
        if config.cacheDiskSize <= 0:
            cache = "off"
    elif config.cacheSize > 0:
        cache = "in memory, {} bytes".format(config.cacheSize)
    else:
        cache = "off"
    if cache != "off":
        cache += " (objects up to {} bytes)".format(config.cacheMaxObject)
    rows.append(("Cache", cache))
    if config.reversing:
        sites = ["{} -> {!r}".format(name, origin) for name, origin in config.reverseHosts]
        if config.reverse is not None:
            sites.append("others -> {!r}".format(config.reverse))
        rows.append(("Reverse proxy", ", ".join(sites)))
    history = options.get("history")
    rows.append(("History", history if history else "off"))
    accessLog = options.get("access-log")
    rows.append(
        (
            "Access log",
            "{} ({})".format(accessLog, options.get("access-log-format")) if accessLog else "off",
        )
    )
    rows.append(("Header values in logs", "redacted" if config.redactHistory else "all"))
    rows.append(("Metrics endpoint", str(options.get("metrics"))))
    return rows
