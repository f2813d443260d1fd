#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test_examples.sh POOLD PRODUCER CONSUMER POOLCTL [BUILD_DIR EXAMPLES_DIR CC
# SANITIZE]:
# the channel example of examples/, run as a user would. With BUILD_DIR,
# the library is first installed from it under a temporary prefix and the
# example built from EXAMPLES_DIR with its Makefile and pkg-config, as
# examples/Makefile says (with compiler CC and, for a sanitized library, the
# same -fsanitize=SANITIZE); those two programs are then the ones run. Then:
# a poold, the consumer started first (it
# makes or joins the channel and sleeps until messages come), the producer
# sending 3,000 messages (every tenth a 1 MiB frame). Both must say they
# are done, the consumer that every message came in order and intact, and
# poold must then hold no block in use or in transit. Then, with no
# consumer, 5 messages wait in channel "held": `poolctl chans` (table,
# --json) and the Prometheus text show it with 6 messages (the end mark
# too) and no member; a consumer drains it, and it is gone. It starts its own
# poold on a temporary socket and segment, stops it by pid and removes both.
set -u
poold=$1
producer=$2
consumer=$3
poolctl=$4
build=${5:-}
examples=${6:-}
cc=${7:-cc}
sanitize=${8:-}
dir=$(mktemp -d /tmp/poold-ex-XXXXXX)
sock=$dir/poold.sock
shm=/poold-ex-$$
poold_pid=
consumer_pid=
cleanup()
{
    [[ -n $consumer_pid ]] && kill -KILL "$consumer_pid" 2>/dev/null
    if [[ -n $poold_pid ]]; then
        kill -TERM "$poold_pid" 2>/dev/null
        wait "$poold_pid" 2>/dev/null
    fi
    rm -f "/dev/shm$shm"
    rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [[ -f $dir/poold.log ]] && tail -20 "$dir/poold.log"; exit 1; }

if [[ -n $build ]]; then
    cmake --install "$build" --prefix "$dir/prefix" >"$dir/install.log" 2>&1 ||
        fail "cmake --install: $(tail -5 "$dir/install.log")"
    pc=$(dirname "$(find "$dir/prefix" -name poolclient.pc | head -1)")
    [[ -n $pc ]] || fail "no poolclient.pc under the installed prefix"
    cp -r "$examples" "$dir/src"
    make -C "$dir/src" clean >/dev/null
    san=${sanitize:+-fsanitize=${sanitize//;/,}}
    CC=$cc CFLAGS="-O2 -g -Wall -Wextra $san" LDFLAGS="$san" PKG_CONFIG_PATH=$pc \
        make -C "$dir/src" >"$dir/make.log" 2>&1 ||
        fail "make with pkg-config: $(tail -5 "$dir/make.log")"
    grep -q -- "-I$dir/prefix/" "$dir/make.log" ||
        fail "pkg-config did not point the compiler at the installed prefix: $(cat "$dir/make.log")"
    producer=$dir/src/producer
    consumer=$dir/src/consumer
    export LD_LIBRARY_PATH=$(dirname "$(find "$dir/prefix" -name 'libpoolclient.so' | head -1)")
    echo "built with pkg-config from $pc: $producer, $consumer"
fi

"$poold" --socket "$sock" --shm-name "$shm" --size 256M 2>"$dir/poold.log" &
poold_pid=$!
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
[[ -S $sock ]] || fail "poold did not listen on $sock"
export POOLD_SOCKET=$sock

timeout 60 "$consumer" example >"$dir/consumer.out" 2>&1 &
consumer_pid=$!
timeout 60 "$producer" example 3000 >"$dir/producer.out" 2>&1 || fail "producer: $(cat "$dir/producer.out")"
wait "$consumer_pid" || fail "consumer: $(cat "$dir/consumer.out")"
consumer_pid=
cat "$dir/producer.out" "$dir/consumer.out"
grep -q "sent 3000 messages" "$dir/producer.out" || fail "the producer did not say it sent 3000"
grep -q "received 3000 messages .* in order and intact" "$dir/consumer.out" ||
    fail "the consumer did not receive the 3000 in order"
stats=$("$poolctl" --socket "$sock" stats --json) || fail "poolctl stats"
python3 - "$stats" <<'PY' || fail "memory left in use or in transit: $stats"
import json, sys
st = json.loads(sys.argv[1])
def find(d, key):
    if isinstance(d, dict):
        for k, v in d.items():
            if k == key:
                return v
            r = find(v, key)
            if r is not None:
                return r
    return None
use, transit = find(st, "bytes_in_use"), find(st, "blocks_in_transit")
print(f"after both exited: {use} bytes in use, {transit} blocks in transit")
sys.exit(0 if use == 0 and transit == 0 else 1)
PY

# Messages wait in a channel nobody has open.
timeout 60 "$producer" held 5 >/dev/null 2>&1 || fail "producer held 5"
chans=$("$poolctl" --socket "$sock" chans) || fail "poolctl chans"
echo "$chans"
grep -Eq '^held +queue +6 +256 +0 ' <<<"$chans" || fail "poolctl chans does not show held with 6 messages"
json=$("$poolctl" --socket "$sock" chans --json) || fail "poolctl chans --json"
python3 - "$json" <<'PY' || fail "poolctl chans --json: $json"
import json, sys
rows = json.loads(sys.argv[1])["channels"]
assert len(rows) == 1 and rows[0]["name"] == "held", rows
assert rows[0]["depth"] == 6 and rows[0]["members"] == 0 and rows[0]["bytes_held"] > 0, rows
assert rows[0]["sent"] == 6 and rows[0]["received"] == 0, rows
PY
"$poolctl" --socket "$sock" stats --prometheus | grep -q '^poold_channel_depth{channel="held",kind="queue"} 6$' ||
    fail "no poold_channel_depth 6 for held in the Prometheus text"
timeout 60 "$consumer" held >/dev/null 2>&1 || fail "consumer held"
chans=$("$poolctl" --socket "$sock" chans) || fail "poolctl chans"
grep -q "no channel in use" <<<"$chans" || fail "held is still there after it was drained: $chans"
echo "ok"
