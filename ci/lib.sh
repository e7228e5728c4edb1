# Sourced by the CI scripts that start a server on loopback: a free port,
# waiting until the server lists its models, and stopping it.

# free_port: a loopback port nothing listens on now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready URL PID LOG [SECONDS]: returns once URL/v1/models answers;
# fails, with the log's tail, when the server exits first or stays silent
# for SECONDS (default 10).
wait_ready() {
  local url=$1 pid=$2 log=$3 tries=$((${4:-10} * 10))
  for _ in $(seq "$tries"); do
    curl -sf "$url/v1/models" >/dev/null 2>&1 && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the server for $url exited; its log ends:" >&2
      tail -30 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "the server for $url did not answer /v1/models in ${4:-10} s; its log ends:" >&2
  tail -30 "$log" >&2
  return 1
}

# stop_pid PID: stops a background server and reaps it; its exit status
# (from SIGTERM) must not become the script's. Empty PID: nothing to do.
stop_pid() {
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
