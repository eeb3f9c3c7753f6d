#!/bin/sh
# Container entrypoint: `waitroom`, `booking` (uvicorn, WORKERS processes) or `migrate`.
set -eu
# --no-proxy-headers: X-Forwarded-For is read only from *_TRUSTED_PROXIES peers, not by uvicorn.
workers=${WORKERS:-2}
case "${1:-waitroom}" in
    waitroom) exec uvicorn --factory waitroom.app:app_from_env --host 0.0.0.0 --port 8000 \
                  --workers "$workers" --no-access-log --no-proxy-headers --timeout-graceful-shutdown 10 ;;
    booking)  exec uvicorn --factory booking.app:app_from_env --host 0.0.0.0 --port 8001 \
                  --workers "$workers" --no-access-log --no-proxy-headers --timeout-graceful-shutdown 10 ;;
    migrate)  exec machiai migrate ;;
    *)        exec "$@" ;;
esac
