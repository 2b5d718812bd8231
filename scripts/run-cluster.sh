#!/usr/bin/env bash
# make run: build release and run a local 3-node commitlog cluster in the foreground.
#
# Ports (BASE_PORT defaults to 8400):
#   node   rpc (clients + peers, TCP)   gossip (UDP)
#   n1     BASE_PORT                    BASE_PORT+10
#   n2     BASE_PORT+1                  BASE_PORT+11
#   n3     BASE_PORT+2                  BASE_PORT+12
# so by default 127.0.0.1:8400-8402 and 8410-8412; `clog` finds the cluster from any
# of them (its default --addr is 127.0.0.1:8400).
#
# Data lives in target/cluster/n{1,2,3} and is kept across runs (a restart is a
# restart: same identities, same log). `make run-clean` wipes it.
# Logs of all three nodes go to this terminal, each line prefixed with [n1]/[n2]/[n3].
# Ctrl-C stops all three (SIGTERM, bounded wait, then SIGKILL), shows their shutdown
# lines, and exits 0.
#
# `run-cluster.sh --node N` (make run-node N=2) starts only node N of that cluster,
# e.g. to bring back a node you killed while `make run` keeps the others running.
#
# Environment: BASE_PORT, HOST (127.0.0.1), DATA_ROOT (target/cluster), RUST_LOG
# (info), START_TIMEOUT_S (30), STOP_TIMEOUT_S (15), CARGO (cargo),
# NODE_FLAGS (extra commitlogd flags for every node), BIN_DIR (target/release).
set -euo pipefail

cd "$(dirname "$0")/.."

ONLY_NODE=
if [[ ${1:-} == --node ]]; then
    ONLY_NODE=${2:-}
    [[ $ONLY_NODE =~ ^[1-3]$ ]] || { echo "run-cluster: --node needs 1, 2 or 3 (got '$ONLY_NODE')" >&2; exit 2; }
fi

BASE_PORT=${BASE_PORT:-8400}
HOST=${HOST:-127.0.0.1}
DATA_ROOT=${DATA_ROOT:-target/cluster}
START_TIMEOUT_S=${START_TIMEOUT_S:-30}
STOP_TIMEOUT_S=${STOP_TIMEOUT_S:-15}
CARGO=${CARGO:-cargo}
NODE_FLAGS=${NODE_FLAGS:-}
NODES=3
BIN_DIR=${BIN_DIR:-target/release}
BIN=$BIN_DIR/commitlogd
CLOG=$BIN_DIR/clog

die() {
    echo "run-cluster: $*" >&2
    exit 1
}

[[ $BASE_PORT =~ ^[0-9]+$ ]] && ((BASE_PORT >= 1 && BASE_PORT + 12 <= 65535)) ||
    die "BASE_PORT must be a number between 1 and 65523 (got '$BASE_PORT')"

rpc_addr() { echo "$HOST:$((BASE_PORT + $1 - 1))"; }
gossip_addr() { echo "$HOST:$((BASE_PORT + 10 + $1 - 1))"; }

echo "run-cluster: building release binaries..." >&2
$CARGO build --release --bins

if ! "$BIN" --help 2>/dev/null | grep -q -- '--bootstrap'; then
    die "this commitlogd has no cluster mode yet (no --bootstrap flag); use 'make dev' for a single node"
fi

# Refuse to start on ports that are taken (an old cluster or a `make dev` node).
for i in ${ONLY_NODE:-$(seq 1 $NODES)}; do
    port=$((BASE_PORT + i - 1))
    if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
        die "$HOST:$port is already in use (another cluster or 'make dev'?); stop it or pick another BASE_PORT"
    fi
done

pids=()
names=()
stopping=0

stop_all() {
    ((stopping)) && return
    stopping=1
    trap - INT TERM
    local alive=()
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null && alive+=("$pid")
    done
    if ((${#alive[@]})); then
        echo "run-cluster: stopping ${#alive[@]} node(s) (SIGTERM, up to ${STOP_TIMEOUT_S}s)..." >&2
        kill -TERM "${alive[@]}" 2>/dev/null || true
    fi
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    for pid in "${alive[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "run-cluster: pid $pid did not stop in time; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    # Let the log prefixers print the nodes' last lines before the prompt returns.
    wait 2>/dev/null || true
    echo "run-cluster: stopped; data kept in $DATA_ROOT (make run-clean wipes it)" >&2
}
# Ctrl-C is how this is meant to end: exit 0 (make would report `Error 130`).
trap 'stop_all; exit 0' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

colors=(36 33 35 32 34)
start_node() {
    local i=$1 dir="$DATA_ROOT/n$1"
    mkdir -p "$dir"
    rm -f "$dir/ready"
    local mode=()
    if ((i == 1)) && [[ -z "$(ls -A "$dir/data" 2>/dev/null)" ]]; then
        # First run: n1 creates the cluster.
        mode=(--bootstrap)
    else
        # Everyone else, and n1 on later runs (its Raft state is on disk; --join gives
        # it gossip seeds so the others see it alive again).
        local join=()
        for j in $(seq 1 $NODES); do ((j != i)) && join+=("$(gossip_addr "$j")"); done
        mode=(--join "$(IFS=,; echo "${join[*]}")")
    fi
    local prefix="[n$i] "
    if [[ -t 1 ]]; then
        prefix=$'\e['"${colors[$(((i - 1) % 5))]}"'m[n'"$i"$']\e[0m '
    fi
    # shellcheck disable=SC2086  # NODE_FLAGS is a list of flags
    RUST_LOG=${RUST_LOG:-info} "$BIN" \
        --node-id "$i" --node-name "n$i" \
        --data-dir "$dir/data" \
        --listen "$(rpc_addr "$i")" --gossip-listen "$(gossip_addr "$i")" \
        --cluster-name local \
        --ready-file "$dir/ready" \
        "${mode[@]}" $NODE_FLAGS \
        > >(trap '' INT; exec sed -u "s/^/$prefix/") 2>&1 &
    pids+=($!)
    names+=("n$i")
}

wait_ready() {
    local i=$1 pid=${2:-${pids[$(($1 - 1))]}}
    local deadline=$((SECONDS + START_TIMEOUT_S))
    while [[ ! -s "$DATA_ROOT/n$i/ready" ]]; do
        kill -0 "$pid" 2>/dev/null || die "n$i exited during start-up (see its log above)"
        ((SECONDS < deadline)) || die "n$i not ready within ${START_TIMEOUT_S}s"
        sleep 0.1
    done
}

if [[ -n $ONLY_NODE ]]; then
    start_node "$ONLY_NODE"
    wait_ready "$ONLY_NODE" "${pids[0]}"
    echo "run-cluster: n$ONLY_NODE up at $(rpc_addr "$ONLY_NODE"); Ctrl-C stops it" >&2
else
for i in $(seq 1 $NODES); do
    start_node "$i"
    # n1 first: on a first run the others join through its gossip address.
    ((i == 1)) && wait_ready 1
done
for i in $(seq 2 $NODES); do wait_ready "$i"; done

seeds="$(rpc_addr 1),$(rpc_addr 2),$(rpc_addr 3)"
cat >&2 <<EOF

run-cluster: 3 nodes up (data in $DATA_ROOT). In another terminal:
  $CLOG --addr $seeds servers
  $CLOG --addr $seeds status
  $CLOG --addr $seeds produce hello world
  $CLOG --addr $seeds consume
  $CLOG --addr $seeds tail -f
Ctrl-C stops the cluster. A node you killed comes back with: make run-node N=<1|2|3>

EOF
fi

# Foreground until Ctrl-C. A node that dies on its own (e.g. you kill -9 it to
# watch a failover) is reported; the others keep running.
remaining=${#pids[@]}
while ((remaining > 0)); do
    set +e
    wait -n -p done_pid "${pids[@]}" 2>/dev/null
    status=$?
    set -e
    [[ -z ${done_pid:-} ]] && break
    for k in "${!pids[@]}"; do
        if [[ ${pids[$k]} == "$done_pid" ]]; then
            echo "run-cluster: ${names[$k]} (pid $done_pid) exited with status $status" >&2
        fi
    done
    remaining=$((remaining - 1))
    done_pid=
done
