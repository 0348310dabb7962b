# Helpers shared by scripts/check-prometheus.sh and scripts/check-openapi.sh (sourced, not run).
# The caller sets CHECK_NAME (the prefix of its messages) and DEMO_PID / PROM_PID when it
# starts those processes.

log() { printf '==> %s\n' "$*"; }
die() { printf '%s: FAIL: %s\n' "$CHECK_NAME" "$*" >&2; exit 1; }

# stop_pid PID NAME: SIGTERM, up to 10s to exit, then SIGKILL.
stop_pid() {
  local pid=$1 name=$2 i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    printf '%s: %s (pid %s) ignored SIGTERM; killing it\n' "$CHECK_NAME" "$name" "$pid" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2s until it succeeds; fails
# at once if the demo (or Prometheus) it waits on has exited.
wait_until() {
  local timeout=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ -n "${DEMO_PID:-}" ] && ! kill -0 "$DEMO_PID" 2>/dev/null; then
      die "the demo exited while waiting for: $what"
    fi
    if [ -n "${PROM_PID:-}" ] && ! kill -0 "$PROM_PID" 2>/dev/null; then
      die "prometheus exited while waiting for: $what"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${timeout}s waiting for: $what"
    sleep 0.2
  done
}
