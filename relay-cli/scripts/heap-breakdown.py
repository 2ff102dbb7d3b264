#!/usr/bin/env python3
"""Heap per idle pair, by component, from two dhat profiles.

Build `relay` with `--features dhat-heap` and run the memory part twice, with
N and M idle pairs (M > N):

    RELAY_DHAT_FILE=a.json relay bench --no-pion --only memory --pairs 20
    RELAY_DHAT_FILE=b.json relay bench --no-pion --only memory --pairs 120
    python3 relay-cli/scripts/heap-breakdown.py a.json 20 b.json 120

Each profile is written while its pairs are connected and idle, so the live
bytes at its end are those pairs' (plus what the process holds anyway); the
difference of the two, divided by M - N, is what one pair costs, and nothing
that does not grow with pairs. Each allocation is put under the first
frame, from the allocation outwards, that names a component below.
"""
import json
import sys
from collections import defaultdict

# (component, prefixes of the frame's symbol), tried in order for each frame.
COMPONENTS = [
    ("str0m SCTP (sctp-proto)", ["sctp_proto::", "str0m::sctp"]),
    ("str0m DTLS (dimpl)", ["dimpl::", "str0m::dtls", "str0m_aws_lc_rs::dtls", "relay_proto::crypto::SharedConfigDtls"]),
    ("str0m SRTP", ["str0m::rtp_::srtp", "str0m_aws_lc_rs::srtp", "str0m::session::Session::set_keying"]),
    ("str0m ICE", ["is::", "str0m::ice", "str0m_proto::net"]),
    ("str0m media and streams", ["str0m::streams", "str0m::media", "str0m::change", "str0m::session", "str0m::format", "str0m::packet", "str0m::rtp_"]),
    ("str0m other (Rtc, config)", ["str0m::", "str0m_proto::"]),
    ("relay-proto (our core)", ["relay_proto::"]),
    # The peer's task: its future holds relay-proto's Peer, and in it
    # str0m's Rtc, inline.
    ("the peer's task (Driver, relay-proto Peer, str0m Rtc inline)", ["relay_async::peer::start"]),
    ("relay-async (our queues, sockets, handles)", ["relay_async::"]),
    ("tokio (tasks, timers, sockets)", ["tokio::"]),
    ("relay-cli (the bench itself)", ["relay::"]),
]


def symbol(frame):
    # "0xADDR: symbol (file:line)"
    s = frame.split(": ", 1)[-1]
    return s.rsplit(" (", 1)[0] if s.endswith(")") else s


def component(frames):
    for f in frames:
        sym = symbol(f)
        for name, prefixes in COMPONENTS:
            if any(sym.startswith(p) or ("<" + p) in sym for p in prefixes):
                return name
    return "other"


def live(path):
    d = json.load(open(path))
    ftbl = d["ftbl"]
    out = defaultdict(lambda: [0, 0])
    for pp in d["pps"]:
        frames = [ftbl[i] for i in pp["fs"]]
        c = component(frames)
        out[c][0] += pp["eb"]
        out[c][1] += pp["ebk"]
    return out


def main():
    if len(sys.argv) != 5:
        print(__doc__)
        sys.exit(2)
    a, n, b, m = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    la, lb = live(a), live(b)
    pairs = m - n
    rows = []
    for c in set(la) | set(lb):
        bytes_ = (lb[c][0] - la[c][0]) / pairs
        blocks = (lb[c][1] - la[c][1]) / pairs
        rows.append((bytes_, blocks, c))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    print(f"heap per idle pair ({pairs} pairs between the two profiles): {total / 1024:.1f} KiB")
    print()
    print("| component | KiB per pair | blocks per pair |")
    print("|---|---|---|")
    for bytes_, blocks, c in rows:
        if abs(bytes_) < 64:
            continue
        print(f"| {c} | {bytes_ / 1024:.1f} | {blocks:.0f} |")


if __name__ == "__main__":
    main()
