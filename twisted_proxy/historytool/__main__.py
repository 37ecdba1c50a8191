"""
C{python -m twisted_proxy.historytool}: the same as C{proxyhistory}.
"""

if __name__ == "__main__":
    from twisted_proxy.historytool.main import run

    run()
