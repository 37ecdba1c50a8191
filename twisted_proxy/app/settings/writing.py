# -*- test-case-name: tests.test_config_file -*-
"""
Settings written back as TOML: the effective configuration
(L{formatSettings}, for C{--check-config}) and the repository's
C{proxyserver.example.toml} (L{exampleFile}).
"""

from __future__ import annotations

from ... import __version__
from .building import Built
from .sources import COMMAND_LINE, DEFAULT
from .table import SETTINGS, Setting, defaultOf

__all__ = ["exampleFile", "formatSettings"]


def formatSettings(built: Built) -> str:
    """
    The effective configuration as a TOML file that would reproduce it,
    each value not a default marked with where it came from.
    """
    settings = built.settings
    lines = [
        "# The effective configuration of twisted-proxy {}, from {}.".format(
            __version__,
            f"{settings.configFile} and the command line"
            if settings.configFile
            else "the command line and the defaults",
        ),
    ]
    group = None
    for setting in SETTINGS:
        if not setting.inFile:
            continue
        if setting.group != group:
            group = setting.group
            lines += ["", f"# {group}"]
        name = setting.name
        value = settings.values[name]
        source = settings.sources[name]
        notes = []
        if source == COMMAND_LINE:
            notes.append("from the command line")
        elif source != DEFAULT:
            notes.append("from the file")
        if setting.kind.repeatable and settings.expanded[name] != value:
            notes.append("{} items with the included files".format(len(settings.expanded[name])))
        if name == "pseudonym" and value is None:
            value = built.config.pseudonym
            notes.append("default: " + (setting.defaultText or ""))
        if name == "listen":
            notes.append(
                "listening on " + ", ".join(listener.describe() for listener in built.listeners)
            )
        elif value == [] and setting.defaultText:
            notes.append("empty: " + setting.defaultText)
        if (
            setting.secret
            and value is not None
            and setting.shown(value) != setting.kind.toToml(value)
        ):
            notes.append("password hidden")
        note = ("  # " + "; ".join(notes)) if notes else ""
        if value is None:
            lines.append(f"# {name} is not set: {setting.defaultText or 'none'}{note}")
        else:
            lines.append(f"{name} = {setting.shown(value)}{note}")
    return "\n".join(lines) + "\n"


def exampleFile() -> str:
    """
    The text of C{proxyserver.example.toml}: every key, with its help and
    its default.
    """
    import textwrap

    out = [
        "# twisted-proxy configuration: twistd -n proxyserver --config proxyserver.toml",
        "#",
        "# Every key is a command-line option of the same name (twistd proxyserver --help);",
        "# an option given on the command line wins over the file.  Relative file names are",
        "# relative to this file's directory.  SIGHUP re-reads this file (and the auth file)",
        "# and applies every change to new requests, without dropping a connection, except",
        "# {} (they take a restart); an invalid file is refused with".format(
            ", ".join(s.name for s in SETTINGS if s.restart and s.inFile)
        ),
        "# the reason logged.  Check a file with",
        "#     twistd -n proxyserver --check-config --config proxyserver.toml",
        "#",
        '# Lists of networks and host patterns may name files of them: an item "@PATH"',
        "# stands for the lines of PATH (one item a line, # comments), as Squid's ACL files.",
        "#",
        "# Each key below is shown with its default value, commented out.",
    ]
    group = None
    for setting in SETTINGS:
        if not setting.inFile:
            continue
        if setting.group != group:
            group = setting.group
            out += ["", "", "# " + "-" * 4 + " " + group + " " + "-" * (70 - len(group))]
        out.append("")
        out += ["# " + line for line in textwrap.wrap(setting.help, 86, break_on_hyphens=False)]
        value = defaultOf(setting)
        if setting.defaultText is not None and (value is None or value == []):
            out.append(
                f"# Default: {'not set' if value is None else 'empty'} "
                f"({setting.defaultText}).  For example:"
            )
            out.append(f"#{setting.name} = {_exampleValue(setting)}")
        else:
            if setting.defaultText is not None:
                out.append(f"# Default: {setting.defaultText}.")
            out.append(f"#{setting.name} = {setting.kind.toToml(value)}")
    return "\n".join(out) + "\n"


_EXAMPLES = {
    "pseudonym": '"proxy1.example.net:8080"',
    "max-connections-per-client": "256",
    "max-body": '"100M"',
    "upstream-proxy": '"http://parent.example.net:3128"',
    "no-upstream-proxy-for": '[".internal.example.net"]',
    "allow": '["10.0.0.0/8", "2001:db8::/32", "@/etc/twisted-proxy/clients.txt"]',
    "deny": '["10.66.0.0/16"]',
    "allow-host": '["*.example.com", "@/etc/twisted-proxy/allowed-hosts.txt"]',
    "deny-host": '["ads.example.net", "re:^tracker[0-9]+\\\\.example\\\\.org$"]',
    "auth-file": '"/etc/twisted-proxy/htpasswd"',
    "history": '"/var/log/twisted-proxy/history.jsonl"',
    "access-log": '"/var/log/twisted-proxy/access.log"',
    "cache-dir": '"/var/cache/twisted-proxy"',
    "reverse": '"http://127.0.0.1:8000"',
    "reverse-host": '["www.example.com=http://127.0.0.1:8000"]',
    "metrics": '"tcp:9100:interface=127.0.0.1"',
}


def _exampleValue(setting: Setting) -> str:
    if setting.name in _EXAMPLES:
        return _EXAMPLES[setting.name]
    return setting.kind.toToml(defaultOf(setting))
