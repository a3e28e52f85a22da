#!/usr/bin/env bash
# One command from a fresh clone: install Helios into .venv, start a solo cluster (a
# conductor and a node in one process), deploy examples/jobs/hello.yaml, show it working,
# then remove the job and stop the cluster by its PID.
#
#     bash examples/quickstart.sh
#
# Needs Python 3.11+ only: the solo cluster uses the process runtime, so no Docker daemon.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

python3 -m venv .venv
.venv/bin/pip install -q -e .
export PATH="$PWD/.venv/bin:$PATH"

state=$(mktemp -d /tmp/helios-quickstart.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export HELIOS_CONDUCTOR="127.0.0.1:$port"

say "helios solo --runtime process --listen $HELIOS_CONDUCTOR --state-dir $state &"
helios solo --runtime process --listen "$HELIOS_CONDUCTOR" --state-dir "$state" \
    >"$state/solo.log" 2>&1 &
solo=$!
cleanup() {
    helios job rm hello >/dev/null 2>&1 || true
    # Wait (bounded) until the node has stopped the job's processes, then stop solo: a
    # node daemon that stops leaves its tasks running on purpose (a restarted daemon
    # adopts them), so the job goes first.
    for _ in $(seq 1 100); do
        tasks=$(helios nodes --json 2>/dev/null |
                python3 -c 'import json, sys; print(sum(n["tasks"] for n in json.load(sys.stdin)))' \
                2>/dev/null || echo gone)
        [ "$tasks" = 0 ] || [ "$tasks" = gone ] && break
        sleep 0.2
    done
    kill "$solo" 2>/dev/null || true
    wait "$solo" 2>/dev/null || true
    echo "solo cluster stopped; its log and state are in $state"
}
trap cleanup EXIT

say "helios job run examples/jobs/hello.yaml --wait"
helios job run examples/jobs/hello.yaml --wait
say "helios job status hello"
helios job status hello
say "helios nodes"
helios nodes
say "helios endpoints hello --json"
helios endpoints hello --json
say "curl the first endpoint"
helios endpoints hello --json | python3 -c '
import json, sys, urllib.request
ep = json.load(sys.stdin)[0]
url = "http://%s:%d/" % (ep["host"], ep["ports"]["http"])
with urllib.request.urlopen(url, timeout=5) as r:
    print(url, "->", r.status, r.reason)'
say "helios job history hello"
helios job history hello
