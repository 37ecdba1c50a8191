"""
The proxy daemon's protocols: the client connection, the exchange, upstream
connections and their pool, tunnels, and the access policy.

The reactor and the clocks are always passed in, never imported.
"""
