#!/usr/bin/env python3
"""Drive two relay-go-peer processes against each other through the control
protocol on stdin/stdout, the way a Rust integration test drives one of them.

    cli_smoke.py [BINARY] [--flip]

Without --flip: signal exchange, ready, echo request both ways, emit, a VP8
track with RTP and a PLI back, a data channel, then close on one side and the
ICE-driven close on the other. With --flip: the offerer takes the wrong DTLS
role (-flip-dtls), so the connection must fail on both sides with an error and
exit status 1. Exits 0 when everything expected was seen.
"""

import base64
import json
import os
import queue
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class Peer:
    def __init__(self, binary, *args):
        self.name = args[1]
        self.proc = subprocess.Popen(
            [binary, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.events = []
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            ev = json.loads(line)  # stdout must be pure JSON lines
            print(f"[{self.name}] {line.rstrip()[:200]}")
            self.q.put(ev)

    def send(self, obj):
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def wait(self, pred, timeout=5.0, what="event"):
        """Return the first event (seen before or arriving) matching pred."""
        for ev in self.events:
            if pred(ev):
                return ev
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                ev = self.q.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            self.events.append(ev)
            if pred(ev):
                return ev
        raise AssertionError(f"{self.name}: timed out waiting for {what}")


def b64(s):
    return base64.b64encode(s.encode()).decode()


def typ(t, **fields):
    return lambda ev: ev.get("type") == t and all(ev.get(k) == v for k, v in fields.items())


def exchange(offer_peer, answer_peer):
    offer = offer_peer.wait(typ("offer"), what="offer")
    assert isinstance(offer["signal"], dict), "signal must be embedded as an object"
    answer_peer.send(offer)
    answer = answer_peer.wait(typ("answer"), what="answer")
    offer_peer.send(answer)


def normal(binary):
    o = Peer(binary, "-role", "offer", "-peer-id", "p1", "-session-id", "s1")
    a = Peer(binary, "-role", "answer")
    exchange(o, a)
    o.wait(typ("ready"), what="ready")
    a.wait(typ("ready"), what="ready")

    o.send({"cmd": "request", "event": "echo-1", "payload": b64("ping"), "timeoutMs": 1000})
    a.send({"cmd": "request", "event": "echo-2", "payload": None})
    sent = o.wait(typ("request_sent", event="echo-1"))
    rep = o.wait(typ("reply", event="echo-1"))
    assert rep["id"] == sent["id"] and rep["payload"] == b64("ping"), rep
    assert a.wait(typ("reply", event="echo-2"))["payload"] is None

    o.send({"cmd": "emit", "event": "hello", "payload": b64("hi")})
    a.wait(typ("request", event="hello", payload=b64("hi")))
    a.send({"cmd": "request", "event": "nobody-answers", "payload": None, "timeoutMs": 200})
    a.wait(typ("request_failed", event="nobody-answers"))

    o.send({"cmd": "add_track", "kind": "video", "ssrc": 12345678, "streamId": "s", "trackId": "v",
            "packets": 60, "intervalMs": 20})
    added = o.wait(typ("track_added", trackId="v"))
    assert added["ssrc"] == 12345678 and added["payloadType"] == 96, added
    tr = a.wait(typ("track", trackId="v"))
    assert tr["mimeType"] == "video/VP8" and tr["ssrc"] == 12345678, tr
    a.wait(lambda ev: ev.get("type") == "rtp" and ev["ssrc"] == 12345678 and ev["count"] == 60,
           timeout=6, what="rtp count 60")
    a.send({"cmd": "pli", "ssrc": 12345678})
    o.wait(typ("pli", ssrc=12345678))

    o.send({"cmd": "create_data_channel", "label": "chat"})
    assert o.wait(typ("data_channel", label="chat", origin="local"))["id"] == 1
    a.wait(typ("data_channel", label="chat", origin="remote"))
    a.send({"cmd": "send", "label": "chat", "data": b64("over the channel")})
    o.wait(typ("dc_message", label="chat", data=b64("over the channel")))

    o.send({"cmd": "close"})
    assert o.wait(typ("closed"))["reason"] == "closed by command"
    assert o.proc.wait(timeout=5) == 0
    reason = a.wait(typ("closed"), timeout=15)["reason"]
    assert reason.startswith("ice "), reason
    assert a.proc.wait(timeout=5) == 0
    print(f"OK: normal run (answerer closed by: {reason})")


def flipped(binary):
    o = Peer(binary, "-role", "offer", "-flip-dtls")
    a = Peer(binary, "-role", "answer")
    exchange(o, a)
    for p in (o, a):
        closed = p.wait(typ("closed"), timeout=60, what="closed after DTLS failure")
        assert closed["reason"].startswith("start failed"), closed
        assert p.proc.wait(timeout=5) == 1
        assert not any(ev.get("type") == "ready" for ev in p.events), "must never become ready"
    print("OK: flipped DTLS roles fail on both sides")


def main():
    args = [x for x in sys.argv[1:] if not x.startswith("--")]
    binary = args[0] if args else os.path.join(HERE, "bin", "relay-go-peer")
    start = time.time()
    if "--flip" in sys.argv:
        flipped(binary)
    else:
        normal(binary)
    print(f"took {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
