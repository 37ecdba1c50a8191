# -*- test-case-name: tests.test_policy -*-
"""
How the policy says no: L{Refused} (403), L{AuthenticationRequired} (407),
and L{ConfigurationError} for settings it cannot use.
"""

from __future__ import annotations

from ...http.errors import Forbidden, ProxyAuthenticationRequired

__all__ = [
    "AuthenticationRequired",
    "ConfigurationError",
    "HtpasswdError",
    "Refusal",
    "Refused",
]


class ConfigurationError(ValueError):
    """
    A policy option has a value that cannot be used; the message says which
    and what to do.
    """


class HtpasswdError(ConfigurationError):
    """
    An htpasswd file cannot be used.

    @ivar path: the file.
    @ivar lineNumber: the 1-based line at fault, or L{None} when the problem
        is the whole file (unreadable, not UTF-8).
    """

    def __init__(self, path: str, lineNumber: int | None, message: str) -> None:
        where = path if lineNumber is None else f"{path}, line {lineNumber}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.lineNumber = lineNumber


class Refused(Forbidden):
    """
    A 403 by policy.

    @ivar rule: the rule that matched, for the logs, e.g.
        C{"deny-host *.example.com"}.
    """

    def __init__(self, detail: str, *, rule: str, proxyStatus: str | None = None) -> None:
        super().__init__(detail, proxyStatus=proxyStatus)
        self.rule = rule

    def __repr__(self) -> str:
        return f"<Refused {self.proxyStatus} rule={self.rule!r}: {self.detail!r}>"


class AuthenticationRequired(ProxyAuthenticationRequired):
    """
    A 407: credentials are missing, malformed or wrong.  Carries the
    C{Proxy-Authenticate} challenge in C{headers}.

    @ivar rule: why, for the logs: C{"auth-file missing-credentials"},
        C{"auth-file malformed-credentials"},
        C{"auth-file unsupported-scheme"}, C{"auth-file unknown-user"} or
        C{"auth-file wrong-password"}.
    @ivar claimedUser: the user name the client sent (unverified; printable
        ASCII only, at most 64 characters), or L{None}.  Never the password.
    """

    def __init__(
        self,
        detail: str,
        *,
        rule: str,
        challenge: str,
        claimedUser: str | None = None,
    ) -> None:
        super().__init__(detail, headers=(("Proxy-Authenticate", challenge),))
        self.rule = rule
        self.claimedUser = claimedUser

    def __repr__(self) -> str:
        return f"<AuthenticationRequired rule={self.rule!r} claimedUser={self.claimedUser!r}>"


Refusal = Refused | AuthenticationRequired
