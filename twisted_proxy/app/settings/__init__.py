# -*- test-case-name: tests.test_config_file -*-
"""
Every setting of C{twistd proxyserver}, in one table: L{SETTINGS}.

A setting has one name, which is both its command-line option
(C{--connect-timeout}) and its configuration-file key
(C{connect-timeout = 10}); one default; one help text; and one L{Kind}
that reads and checks a value, whether it was typed on the command line or
written in a TOML file.  The command-line L{Options
<twisted_proxy.app.options.Options>}, the configuration file
(L{readConfigFile}), C{--check-config} (L{formatSettings}) and the
repository's C{proxyserver.example.toml} (L{exampleFile}) are all made from
this table, so they cannot disagree.

Where a setting is a field of L{ProxyConfig
<twisted_proxy.proxy.config.ProxyConfig>} (its metadata names the option),
the default is that field's default: the configuration value keeps its own
defaults, and this table only says how to spell them.

L{resolve} merges the command line over the file over the defaults into
L{Settings}, a plain, JSON-able mapping that remembers where each value came
from, so that an error names the option or the file and key the user wrote.
L{build} turns L{Settings} into what the proxy runs with (L{Built}).

To add a setting: add a L{Setting} to L{SETTINGS} (and, if the proxy reads
it per request, a field to L{ProxyConfig} whose metadata names it).
C{tests/test_config_file.py} checks that the example file lists it.

The package, by job:

  - L{kinds <twisted_proxy.app.settings.kinds>}: how a value is read,
    checked and written (seconds, sizes, lists, ...);
  - L{table <twisted_proxy.app.settings.table>}: L{SETTINGS} itself;
  - L{sources <twisted_proxy.app.settings.sources>}: the configuration
    file, and errors that say where a value was written;
  - L{resolution <twisted_proxy.app.settings.resolution>}: L{resolve} and
    L{Settings};
  - L{building <twisted_proxy.app.settings.building>}: L{build}, L{Built},
    L{CommandLine};
  - L{writing <twisted_proxy.app.settings.writing>}: L{formatSettings} and
    L{exampleFile}.
"""

from __future__ import annotations

from .building import Built, CommandLine, build
from .kinds import Expected, Flag, formatSize
from .resolution import Settings, resolve
from .sources import COMMAND_LINE, DEFAULT, SettingError, readConfigFile, settingError
from .table import BY_NAME, SETTINGS, Setting, defaultOf
from .writing import exampleFile, formatSettings

__all__ = [
    "BY_NAME",
    "COMMAND_LINE",
    "DEFAULT",
    "SETTINGS",
    "Built",
    "CommandLine",
    "Expected",
    "Flag",
    "Setting",
    "SettingError",
    "Settings",
    "build",
    "defaultOf",
    "exampleFile",
    "formatSettings",
    "formatSize",
    "readConfigFile",
    "resolve",
    "settingError",
]
