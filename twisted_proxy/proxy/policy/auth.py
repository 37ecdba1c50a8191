# -*- test-case-name: tests.test_policy -*-
"""
Proxy authentication: L{Htpasswd} (an Apache htpasswd file, verified with
passlib and bcrypt, with bounded caches of recent outcomes) and the
C{Proxy-Authorization: Basic} credentials it checks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Literal, TypeVar

from passlib.context import CryptContext

from .refusals import ConfigurationError, HtpasswdError

__all__ = [
    "DEFAULT_REALM",
    "Htpasswd",
    "UnsupportedScheme",
    "challenge",
    "parseBasicCredentials",
    "printable",
]

_K = TypeVar("_K")
_V = TypeVar("_V")

DEFAULT_REALM = "twisted-proxy"


class _Known(Enum):
    # Htpasswd._lookup: the caches do not know these credentials.
    UNKNOWN = "unknown"


_UNKNOWN: Literal[_Known.UNKNOWN] = _Known.UNKNOWN


class UnsupportedScheme(ValueError):
    """
    The C{Proxy-Authorization} value is not of the C{Basic} scheme.
    """


def parseBasicCredentials(value: bytes) -> tuple[bytes, bytes]:
    """
    Parse a C{Proxy-Authorization} field value of the C{Basic} scheme
    (RFC 7617).

    @return: C{(user, password)} as the bytes the client sent.
    @raise UnsupportedScheme: if the scheme is not C{Basic}.
    @raise ValueError: with a short reason, if the credentials are missing,
        not valid base64, or have no colon.
    """
    scheme, _, token = value.strip(b" \t").partition(b" ")
    if scheme.lower() != b"basic":
        raise UnsupportedScheme("unsupported scheme")
    token = token.strip(b" \t")
    if not token:
        raise ValueError("no credentials after Basic")
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("credentials are not valid base64") from None
    user, colon, password = decoded.partition(b":")
    if not colon:
        raise ValueError("credentials have no ':' between user and password")
    return user, password


def _b64(text: str) -> bytes:
    """
    Strict base64 decoding of C{text}.

    @raise ValueError: if it is not base64.
    """
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None


def _decodeText(raw: bytes) -> str:
    """
    Decode user-supplied credential bytes: UTF-8 (RFC 7617), else Latin-1
    (what older clients send).
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def printable(text: str, limit: int = 64) -> str:
    """
    C{text} made safe for a log line: printable ASCII only, bounded length.
    """
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


@dataclass(frozen=True)
class _Entry:
    """
    One user of an htpasswd file.

    @ivar hash: the stored hash.
    @ivar scheme: its passlib scheme name.
    """

    hash: str
    scheme: str


# The passlib schemes that verify the supported htpasswd formats.
_SCHEMES = ("bcrypt", "sha512_crypt", "sha256_crypt", "apr_md5_crypt", "ldap_sha1")
_SCHEME_NAMES = "bcrypt ($2y$, $2b$, $2a$), $6$, $5$, $apr1$ or {SHA}"
_BCRYPT_MAX_SECRET = 72


class Htpasswd:
    """
    An htpasswd file, loaded into memory, with a verification cache.

    Not thread-safe: call it from one thread (the reactor's).

    @cvar cacheSize: how many users' successful verifications to remember.
    @cvar failureCacheSize: how many recent failed credentials to remember.

    @ivar path: the file.
    @ivar _entries: user name to L{_Entry}.
    @ivar _timingEntry: an entry verified against when the user is unknown,
        so that an unknown user costs as much as a known one.
    @ivar _cacheKey: per-instance random key for the credential digests, so
        the caches hold nothing an attacker could brute-force offline.
    @ivar _verified: user to the digest of the credentials that last
        verified, most recently used last.
    @ivar _failed: digests of credentials that recently failed, most
        recently used last.
    """

    cacheSize = 1024
    failureCacheSize = 1024

    _context = CryptContext(schemes=list(_SCHEMES))

    def __init__(self, path: str) -> None:
        """
        Load C{path}.

        @raise HtpasswdError: if it cannot be read, or any entry is not a
            supported hash.
        """
        self.path = path
        self._cacheKey = os.urandom(32)
        self._verified: OrderedDict[str, bytes] = OrderedDict()
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        # The caches are shared with the thread that verifies hashes.
        self._lock = threading.Lock()
        self._entries, self._timingEntry = self._load()

    def __len__(self) -> int:
        return len(self._entries)

    def reload(self) -> None:
        """
        Re-read the file and forget every cached verification.  If the file
        is now unusable, raise and keep the previous users and caches.

        @raise HtpasswdError: as L{__init__}.
        """
        entries, timingEntry = self._load()
        with self._lock:
            self._entries, self._timingEntry = entries, timingEntry
            self._verified.clear()
            self._failed.clear()

    def _load(self) -> tuple[dict[str, _Entry], _Entry | None]:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise HtpasswdError(
                self.path, None, f"cannot read the auth file: {e.strerror}"
            ) from None
        entries: dict[str, _Entry] = {}
        for number, rawLine in enumerate(data.splitlines(), 1):
            try:
                line = rawLine.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise HtpasswdError(self.path, number, "not UTF-8 text") from None
            if not line or line.startswith("#"):
                continue
            user, colon, stored = line.partition(":")
            if not colon or not user:
                raise HtpasswdError(
                    self.path,
                    number,
                    f"expected 'user:hash'; create entries with 'htpasswd -B {self.path} USER'",
                )
            if user in entries:
                raise HtpasswdError(
                    self.path,
                    number,
                    f"user {user!r} appears twice; keep one entry per user",
                )
            entries[user] = self._parseEntry(number, user, stored)
        timingEntry = next(iter(entries.values()), None)
        return entries, timingEntry

    def _parseEntry(self, number: int, user: str, stored: str) -> _Entry:
        scheme = self._context.identify(stored)
        if scheme is None:
            if stored.startswith("$"):
                what = "an unsupported hash scheme"
            else:
                what = "a plain-text (or DES crypt) password"
            raise HtpasswdError(
                self.path,
                number,
                f"user {user!r} has {what}, which twisted-proxy refuses; "
                f"store a hash instead: 'htpasswd -B {self.path} {user}' "
                f"(supported: {_SCHEME_NAMES})",
            )
        try:
            parsed = self._context.handler(scheme).from_string(stored)
            if not parsed.checksum:
                raise ValueError("it has a salt but no hash")
            if scheme == "ldap_sha1" and len(_b64(stored[5:])) != 20:
                raise ValueError("a SHA-1 digest is 20 bytes")
        except (ValueError, TypeError) as e:
            raise HtpasswdError(
                self.path,
                number,
                f"user {user!r} has a malformed {scheme} hash ({e}); "
                f"set the password again: 'htpasswd -B {self.path} {user}'",
            ) from None
        return _Entry(stored, scheme)

    def _verify(self, password: bytes, entry: _Entry) -> bool:
        if entry.scheme == "bcrypt":
            # bcrypt uses the first 72 bytes; Apache's htpasswd truncates
            # longer passwords when hashing, and bcrypt 5 refuses them.
            password = password[:_BCRYPT_MAX_SECRET]
        try:
            return bool(self._context.verify(password, entry.hash))
        except (ValueError, TypeError):
            return False

    def authenticate(self, rawUser: bytes, rawPassword: bytes) -> tuple[str, str | None]:
        """
        Check credentials as sent by a client.

        @return: C{(user, None)} when they verify, else C{(claimedUser,
            reason)} with reason C{"unknown-user"} or C{"wrong-password"}.
        """
        user, digest, entry, known = self._lookup(rawUser, rawPassword)
        if known is not _UNKNOWN:
            return user, known
        if entry is None:
            if self._timingEntry is not None:
                self._verify(rawPassword, self._timingEntry)
            with self._lock:
                self._remember(self._failed, digest, None, self.failureCacheSize)
            return user, "unknown-user"
        candidates = [rawPassword]
        try:
            rawPassword.decode("utf-8")
        except UnicodeDecodeError:
            # Not UTF-8, so Latin-1 from an older client; the file was most
            # likely made from the UTF-8 spelling of the same password.
            candidates.append(rawPassword.decode("latin-1").encode("utf-8"))
        for candidate in candidates:
            if self._verify(candidate, entry):
                with self._lock:
                    self._remember(self._verified, user, digest, self.cacheSize)
                return user, None
        with self._lock:
            self._remember(self._failed, digest, None, self.failureCacheSize)
        return user, "wrong-password"

    def _lookup(
        self, rawUser: bytes, rawPassword: bytes
    ) -> tuple[str, bytes, _Entry | None, str | None | Literal[_Known.UNKNOWN]]:
        """
        What the caches already know about these credentials.

        @return: C{(user, digest, entry, known)} where C{known} is L{None}
            (verified), a failure reason, or C{_UNKNOWN} (a hash must be
            checked).
        """
        user = _decodeText(rawUser)
        digest = hmac.new(self._cacheKey, rawUser + b":" + rawPassword, hashlib.sha256).digest()
        with self._lock:
            entry = self._entries.get(user)
            cached = self._verified.get(user)
            if cached is not None and hmac.compare_digest(cached, digest):
                self._verified.move_to_end(user)
                return user, digest, entry, None
            if digest in self._failed:
                self._failed.move_to_end(digest)
                return user, digest, entry, ("unknown-user" if entry is None else "wrong-password")
        return user, digest, entry, _UNKNOWN

    def needsVerification(self, rawUser: bytes, rawPassword: bytes) -> bool:
        """
        Whether L{authenticate} would have to check a hash (slow: bcrypt
        takes tens to hundreds of milliseconds), rather than answer from its
        caches.
        """
        return self._lookup(rawUser, rawPassword)[3] is _UNKNOWN

    @staticmethod
    def _remember(cache: OrderedDict[_K, _V], key: _K, value: _V, size: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > size:
            cache.popitem(last=False)

    def describe(self) -> str:
        users = len(self._entries)
        return f"{users} user{'' if users == 1 else 's'} from {self.path}"


def challenge(realm: str) -> str:
    """
    The C{Proxy-Authenticate} value for C{realm}.

    @raise ConfigurationError: if the realm has non-printable or non-ASCII
        characters.
    """
    if not realm or any(not " " <= c <= "~" for c in realm):
        raise ConfigurationError(f"--auth-realm {realm!r}: use printable ASCII characters only")
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{quoted}"'
