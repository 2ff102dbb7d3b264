#!/usr/bin/env bash
# The fault soak: two `relay` processes in two network namespaces that reach
# each other only through a third, with 5 % loss, 30 ms +- 10 ms delay and
# 2 % reordering each way, for SECS seconds (default 60). `relay offer
# --soak` runs 10,000 requests, echoed data-channel messages and a video
# track with RTX against `relay answer --echo`.
#
#   ns a: relay offer  10.199.1.1:5001 --- 10.199.1.2  ns m  10.199.2.2 --- 10.199.2.1:5002 relay answer  :ns b
#
# m does not route. Each relay announces m's address on the other's side as
# its 1:1 NAT address, and tests/soak/impair.py in m forwards between the
# announced and the real addresses (and the HTTP signalling). The impairment
# is netem on m's two links where the kernel has it; where it does not
# (sch_netem missing), impair.py applies the same figures itself, and the
# first line says which.
#
# Passes when every request got exactly one outcome, every message came
# back whole and in order, and the answerer received at least 99.5 % of the
# video packets. Prints the figures. Needs root (or CAP_NET_ADMIN) for the
# namespaces; where they cannot be made it says so and exits 0 (skipped).
#
#   bash tests/soak/run.sh [SECS] [PATH-TO-relay]
set -euo pipefail

secs="${1:-60}"
relay="$(realpath "${2:-target/release/relay}")"
here="$(cd "$(dirname "$0")" && pwd)"
a=relay-soak-a
b=relay-soak-b
m=relay-soak-m
a_ip=10.199.1.1
m_a_ip=10.199.1.2
b_ip=10.199.2.1
m_b_ip=10.199.2.2
a_port=5001
b_port=5002
out="${SOAK_OUT:-target/tmp/soak}"
mkdir -p "$out"
out="$(realpath "$out")"

log() { echo "soak: $*"; }

cleanup() {
    for ns in "$a" "$b" "$m"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    done
    sleep 0.2
    for ns in "$a" "$b" "$m"; do
        ip netns del "$ns" 2>/dev/null || true
    done
}

if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
    log "skipped: ip and tc (iproute2) are not installed"
    exit 0
fi
if ! command -v python3 >/dev/null; then
    log "skipped: python3 is not installed"
    exit 0
fi
cleanup
if ! ip netns add "$a" 2>/dev/null; then
    log "skipped: network namespaces are not allowed here (ip netns add failed)"
    exit 0
fi
trap cleanup EXIT
ip netns add "$b"
ip netns add "$m"
ip link add veth-soak-a netns "$a" type veth peer name veth-soak-ma netns "$m"
ip link add veth-soak-b netns "$b" type veth peer name veth-soak-mb netns "$m"
ip -n "$a" addr add "$a_ip/24" dev veth-soak-a
ip -n "$m" addr add "$m_a_ip/24" dev veth-soak-ma
ip -n "$b" addr add "$b_ip/24" dev veth-soak-b
ip -n "$m" addr add "$m_b_ip/24" dev veth-soak-mb
for ns in "$a" "$b" "$m"; do
    ip -n "$ns" link set lo up
done
ip -n "$a" link set veth-soak-a up
ip -n "$b" link set veth-soak-b up
ip -n "$m" link set veth-soak-ma up
ip -n "$m" link set veth-soak-mb up
ip netns exec "$m" sh -c 'echo 0 > /proc/sys/net/ipv4/ip_forward' 2>/dev/null || true

# 30 ms +- 10 ms, 5 % loss, 2 % sent out of order, each way: netem on m's
# two links, else impair.py.
netem="delay 30ms 10ms loss 5% reorder 2%"
impair=(--loss 5 --delay 30 --jitter 10 --reorder 2)
if ip netns exec "$m" tc qdisc add dev veth-soak-ma root netem $netem 2>"$out/tc.err" \
    && ip netns exec "$m" tc qdisc add dev veth-soak-mb root netem $netem 2>>"$out/tc.err"; then
    log "link: netem $netem, each way; $secs s"
    impair=()
else
    log "link: netem is not available here ($(tr '\n' ' ' < "$out/tc.err")); impair.py applies loss 5 %, delay 30 ms +- 10 ms, reorder 2 %, each way; $secs s"
fi

ip netns exec "$m" python3 "$here/impair.py" \
    --a "$a_ip:$a_port" --a-public "$m_b_ip:$a_port" \
    --b "$b_ip:$b_port" --b-public "$m_a_ip:$b_port" \
    --tcp "$m_a_ip:8080=$b_ip:8080" "${impair[@]}" > "$out/impair.log" 2>&1 &
middle=$!
ip netns exec "$b" "$relay" answer --listen "$b_ip:8080" --bind "$b_ip:$b_port" \
    --announce "$m_a_ip" --echo > "$out/answer.log" 2>&1 &
answerer=$!
for _ in $(seq 50); do
    grep -q "POST offers to" "$out/answer.log" 2>/dev/null \
        && grep -q "impair: ready" "$out/impair.log" 2>/dev/null && break
    sleep 0.1
done
status=0
ip netns exec "$a" "$relay" offer --signal "http://$m_a_ip:8080/relay" \
    --bind "$a_ip:$a_port" --announce "$m_b_ip" --ready-timeout 30 --soak "$secs" \
    > "$out/offer.log" 2>&1 || status=$?
kill -INT "$answerer" 2>/dev/null || true
wait "$answerer" 2>/dev/null || true
kill -INT "$middle" 2>/dev/null || true
wait "$middle" 2>/dev/null || true
cat "$out/offer.log"
grep "^impair: to" "$out/impair.log" || true

sent=$(sed -n 's/^soak: video \([0-9]*\) packets sent$/\1/p' "$out/offer.log")
received=$(sed -n 's/.*track .*-soak-video ended after \([0-9]*\) packets$/\1/p' "$out/answer.log" \
    | tail -n 1)
if [ -z "$sent" ] || [ -z "$received" ]; then
    log "FAILED: no video figures (sent '${sent:-?}', received '${received:-?}'); logs in $out"
    exit 1
fi
ratio=$(python3 -c "print(f'{$received / $sent * 100:.2f}')")
log "video: $received of $sent packets received ($ratio %)"
if [ "$status" -ne 0 ]; then
    log "FAILED: the offerer's checks failed (exit $status); logs in $out"
    exit 1
fi
if ! python3 -c "import sys; sys.exit(0 if $received >= 0.995 * $sent else 1)"; then
    log "FAILED: under 99.5 % of the video arrived"
    exit 1
fi
log "passed"
