# The twistd plugin: `twistd -n proxyserver`.  Only a ServiceMaker lives here;
# twisted_proxy.app.tap is imported lazily, by name, when the plugin is used.
from twisted.application.service import ServiceMaker

TwistedProxy = ServiceMaker(
    "twisted-proxy",
    "twisted_proxy.app.tap",
    "A streaming, standards-correct HTTP/1.1 forward proxy.",
    "proxyserver",
)
