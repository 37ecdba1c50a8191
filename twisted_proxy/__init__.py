"""
twisted-proxy: a streaming, standards-correct HTTP/1.1 forward proxy on Twisted.

This module holds the version only; it imports neither the reactor nor any
submodule, so C{twistd --help} stays cheap.
"""

__version__ = "0.1.0"
