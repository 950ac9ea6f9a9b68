#!/usr/bin/env bash
# Builds novamedic, starts a controller with its embedded SQLite database and
# an agent for this machine, and prints `novamedic nodes`.
#
#   scripts/quickstart.sh          build, start both, show the fleet
#   scripts/quickstart.sh stop     stop what an earlier run started
#
# Everything lives under .novamedic/ in the checkout: the database, the
# agent's state, both logs, the PID files, and in tls/ a CA with the
# controller's, this node's and an operator's certificates, created on the
# first run. The controller listens on 127.0.0.1 only (port from
# NOVAMEDIC_PORT, default 7400) and requires mutual TLS.
set -euo pipefail

cd "$(dirname "$0")/.."
workdir="$PWD/.novamedic"
port="${NOVAMEDIC_PORT:-7400}"
controller="https://127.0.0.1:${port}"
bin="$PWD/target/release"
tls="$workdir/tls"
node="$(hostname)"
operator="quickstart"

stop_pidfile() {
    local pidfile="$1"
    [ -f "$pidfile" ] || return 0
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
}

if [ "${1:-}" = "stop" ]; then
    stop_pidfile "$workdir/agent.pid"
    stop_pidfile "$workdir/controller.pid"
    echo "stopped; data kept in $workdir"
    exit 0
fi

cargo build --release --locked --bins

mkdir -p "$workdir/agent-state"
stop_pidfile "$workdir/agent.pid"
stop_pidfile "$workdir/controller.pid"

if [ ! -f "$tls/ca.key" ]; then
    "$bin/novamedic" certs init-ca --dir "$tls" >/dev/null
    "$bin/novamedic" certs issue --dir "$tls" --kind controller --name localhost \
        --san 127.0.0.1 >/dev/null
    "$bin/novamedic" certs issue --dir "$tls" --kind operator --name "$operator" >/dev/null
fi
if [ ! -f "$tls/node-${node}.crt" ]; then
    "$bin/novamedic" certs issue --dir "$tls" --kind node --name "$node" >/dev/null
fi

cat >"$workdir/controller.toml" <<EOF
listen = "127.0.0.1:${port}"
db = "${workdir}/novamedic.db"

[tls]
cert = "${tls}/controller-localhost.crt"
key = "${tls}/controller-localhost.key"
ca = "${tls}/ca.crt"
crl = "${tls}/ca.crl"

[roles]
operators = ["${operator}"]
EOF
"$bin/novamedic" serve --config "$workdir/controller.toml" \
    >"$workdir/controller.log" 2>&1 &
echo $! >"$workdir/controller.pid"

# A controller that cannot start (port taken, database locked) exits at
# once; say why instead of waiting for an agent that cannot connect.
sleep 1
if ! kill -0 "$(cat "$workdir/controller.pid")" 2>/dev/null; then
    rm -f "$workdir/controller.pid"
    echo "quickstart: the controller did not start; the end of $workdir/controller.log:" >&2
    tail -n 5 "$workdir/controller.log" >&2
    echo "quickstart: pick another port with NOVAMEDIC_PORT=7401 $0" >&2
    exit 1
fi

cat >"$workdir/agent.toml" <<EOF
node = "${node}"
controller = "${controller}"
state_dir = "${workdir}/agent-state"
report_interval_seconds = 5

[tls]
cert = "${tls}/node-${node}.crt"
key = "${tls}/node-${node}.key"
ca = "${tls}/ca.crt"
EOF
"$bin/novamedic-agent" run --config "$workdir/agent.toml" >"$workdir/agent.log" 2>&1 &
echo $! >"$workdir/agent.pid"

# The operator CLI reads its certificate from these variables.
export NOVAMEDIC_CONTROLLER="$controller"
export NOVAMEDIC_TLS_CERT="$tls/operator-${operator}.crt"
export NOVAMEDIC_TLS_KEY="$tls/operator-${operator}.key"
export NOVAMEDIC_TLS_CA="$tls/ca.crt"

# The first report arrives within a second of the agent connecting.
registered=false
for _ in $(seq 100); do
    if "$bin/novamedic" nodes -o json 2>/dev/null | grep -q '"node"'; then
        registered=true
        break
    fi
    sleep 0.2
done
if [ "$registered" != true ]; then
    echo "quickstart: the agent did not report within 20 s; the end of $workdir/agent.log:" >&2
    tail -n 5 "$workdir/agent.log" >&2
fi

"$bin/novamedic" nodes
cat <<EOF

Controller:   ${controller} (log: ${workdir}/controller.log)
Agent:        log ${workdir}/agent.log
Certificates: ${tls} (operator "${operator}" holds the operator role)
Try:
  export NOVAMEDIC_CONTROLLER=${controller}
  export NOVAMEDIC_TLS_CERT=${NOVAMEDIC_TLS_CERT}
  export NOVAMEDIC_TLS_KEY=${NOVAMEDIC_TLS_KEY}
  export NOVAMEDIC_TLS_CA=${NOVAMEDIC_TLS_CA}
  ${bin}/novamedic node show ${node}
Stop both:    scripts/quickstart.sh stop
EOF
