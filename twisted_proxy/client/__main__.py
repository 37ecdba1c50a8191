"""
C{python -m twisted_proxy.client}: the C{proxyclient} console script.
"""

if __name__ == "__main__":
    from twisted_proxy.client.main import run

    run()
