"""
The pure HTTP layer: errors and the responses they become, message framing
(RFC 9112), header fields and the request-target.

Nothing here does I/O or imports C{twisted.internet} (a test enforces it):
bytes and values in, events and values out.
"""
