# twisted-proxy in a container.
#
#   docker build -t twisted-proxy .
#   docker run --rm -p 8080:8080 twisted-proxy
#   docker run --rm -p 3128:3128 -v "$PWD/proxy.toml:/etc/twisted-proxy/proxyserver.toml:ro" \
#       twisted-proxy --config /etc/twisted-proxy/proxyserver.toml
#
# Arguments after the image name are options of `twistd proxyserver`.  The
# process runs as an unprivileged user; `docker stop` sends SIGTERM, and the
# proxy stops accepting, lets transfers finish (shutdown-timeout, 30 s by
# default: give `docker stop -t 40`), and exits 0; `docker kill -s HUP`
# reloads the configuration file.  The console goes to standard output.

FROM python:3.11-slim AS build
# Every dependency installs from a wheel (netifaces-plus has them for
# x86-64 and ARM64): no compiler needed.
WORKDIR /src
COPY pyproject.toml README.rst LICENSE ./
COPY twisted ./twisted
COPY twisted_proxy ./twisted_proxy
# Then Twisted's plugin cache, written now: the proxy's user cannot write
# to site-packages at run time.
RUN python -m venv /opt/twisted-proxy \
 && /opt/twisted-proxy/bin/pip install --no-cache-dir . \
 && /opt/twisted-proxy/bin/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
 && /opt/twisted-proxy/bin/twistd --help | grep -q proxyserver

FROM python:3.11-slim
COPY --from=build /opt/twisted-proxy /opt/twisted-proxy
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin twisted-proxy \
 && install -d -o twisted-proxy -g twisted-proxy -m 0750 /var/log/twisted-proxy \
 && install -d /etc/twisted-proxy
COPY proxyserver.example.toml /etc/twisted-proxy/proxyserver.example.toml
ENV PATH=/opt/twisted-proxy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1
USER twisted-proxy:twisted-proxy
WORKDIR /var/log/twisted-proxy
EXPOSE 8080
STOPSIGNAL SIGTERM
# A connect to the default port (change it with the port you listen on).
HEALTHCHECK --interval=30s --timeout=3s \
    CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8080), 2).close()"]
ENTRYPOINT ["twistd", "--nodaemon", "--pidfile=", "proxyserver"]
CMD []
