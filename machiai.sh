#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv, installs machiai into it
# (again only when pyproject.toml changed), then runs what you asked for.
#
#   ./machiai.sh run            the whole system (waitroom + booking; embedded
#                               Redis and Postgres unless REDIS_URL / DATABASE_URL)
#   ./machiai.sh test           the test suite: ruff, mypy, pytest
#   ./machiai.sh <command>      any other `machiai` command (migrate, seed-demo, ...)
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "machiai needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)." >&2
    exit 2
fi

venv=.venv
stamp="$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv" >&2
    "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ]; then
    echo "==> installing machiai and its dependencies into $venv (log: $venv/install.log)" >&2
    if ! { "$venv/bin/python" -m pip install --upgrade pip \
           && "$venv/bin/python" -m pip install -e ".[dev,loadtest]"; } >"$venv/install.log" 2>&1; then
        tail -n 40 "$venv/install.log" >&2
        echo "installation failed; the whole log is in $venv/install.log" >&2
        exit 1
    fi
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi

cmd=${1:-run}
[ $# -gt 0 ] && shift
case "$cmd" in
    test)
        # Page tests drive Debian's Chromium (and write screenshots, which need a Japanese
        # font); install them where we may (root + apt), otherwise those tests skip and say why.
        if { ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi ipagothic; } \
            && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "==> installing Debian's chromium and a Japanese font for the browser tests" >&2
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-ipafont-gothic) >/dev/null 2>&1 \
                || echo "    (could not install them; without chromium the browser tests are skipped)" >&2
        fi
        # The alert rules and the dashboard's queries are checked with Prometheus's promtool.
        if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "==> installing Debian's prometheus (promtool) for the monitoring files' tests" >&2
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null 2>&1 \
                || echo "    (could not install it; without promtool those tests are skipped)" >&2
        fi
        # The Compose front proxy's config runs under Debian's nginx (tests/infra/test_proxy.py),
        # unpacked into the venv rather than installed: no system nginx starts on port 80.
        if ! command -v nginx >/dev/null 2>&1 && [ ! -x "$venv/nginx/usr/sbin/nginx" ] \
            && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
            echo "==> unpacking Debian's nginx into $venv/nginx for the proxy tests" >&2
            nginx_dir="$PWD/$venv/nginx"; nginx_tmp=$(mktemp -d)
            if ! (cd "$nginx_tmp" && { apt-get download nginx \
                    || { [ "$(id -u)" = 0 ] && apt-get update -qq && apt-get download nginx; }; } \
                    && dpkg-deb -x nginx_*.deb "$nginx_dir") >/dev/null 2>&1; then
                rm -rf "$nginx_dir"
                echo "    (could not; without nginx the proxy tests are skipped)" >&2
            fi
            rm -rf "$nginx_tmp"
        fi
        echo "==> ruff" >&2
        "$venv/bin/ruff" check .
        "$venv/bin/ruff" format --check .
        echo "==> mypy" >&2
        "$venv/bin/mypy"
        echo "==> pytest" >&2
        [ $# -gt 0 ] && exec "$venv/bin/pytest" "$@"
        "$venv/bin/pytest"
        # The whole command, not a chosen test: both services again over a local Redis
        # Cluster (3 masters + 3 replicas, tests/servers.py). Not the browser pages (minutes
        # of Chromium for the requests the API tests make) nor the failover test (its own
        # cluster whatever the mode: it ran above).
        echo "==> pytest: booking and waitroom against a Redis Cluster (MACHIAI_TEST_REDIS=cluster)" >&2
        MACHIAI_TEST_REDIS=cluster exec "$venv/bin/pytest" tests/booking tests/waitroom \
            --ignore-glob='*_browser.py' --ignore=tests/booking/test_cluster_failover.py
        ;;
    *)
        exec "$venv/bin/machiai" "$cmd" "$@"
        ;;
esac
