#!/bin/sh
# Container entrypoint: `waitroom`, `booking` (uvicorn, WORKERS processes), `deliver` (the
# outbox's delivery worker) or `migrate`.
set -eu
# --no-proxy-headers: X-Forwarded-For is read only from *_TRUSTED_PROXIES peers, not by uvicorn.
# SIGTERM drains: uvicorn stops accepting, lets requests in flight finish for up to
# DRAIN_S seconds, then runs the lifespan shutdown. Kubernetes' terminationGracePeriodSeconds
# and Compose's stop_grace_period must exceed preStop + DRAIN_S (tests/infra checks it).
DRAIN_S=10
workers=${WORKERS:-2}
serve() {
    # Metrics of every worker in one scrape (machiai/metrics.py): prometheus-client's
    # multiprocess mode, in a directory emptied at each start (files of processes gone
    # would otherwise be summed in).
    PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-/tmp/machiai-metrics}
    rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    export PROMETHEUS_MULTIPROC_DIR
    exec uvicorn --factory "$1" --host 0.0.0.0 --port "$2" --workers "$workers" \
        --no-access-log --no-proxy-headers --timeout-graceful-shutdown "$DRAIN_S"
}
case "${1:-waitroom}" in
    waitroom) serve waitroom.app:app_from_env "${WAITROOM_PORT:-8000}" ;;
    booking)  serve booking.app:app_from_env "${BOOKING_PORT:-8001}" ;;
    deliver)  exec machiai deliver ;;
    migrate)  exec machiai migrate ;;
    *)        exec "$@" ;;
esac
