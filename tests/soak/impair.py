#!/usr/bin/env python3
"""The middle of the fault soak: forwards UDP between two relay peers that
cannot reach each other, and TCP for their HTTP signalling.

Each peer announces (as its 1:1 NAT address) an address of this middle
box, with its own bound port; this process binds both announced addresses.
What peer A sends to B's announced address leaves from A's announced
address toward B's real one, and the other way round, so each side sees the
other's announced candidate and nothing else.

Where netem is missing (a kernel without sch_netem), the same impairment is
applied here, per direction and per datagram, as netem would: drop with
probability LOSS; else hold for DELAY +- JITTER (uniform) and release in
time order, so jitter reorders as netem's time-ordered queue does; REORDER
of the datagrams skip the delay. Seeded, so two runs draw the same fates.

  impair.py --a 10.199.1.1:5001 --a-public 10.199.2.2:5001 \\
            --b 10.199.2.1:5002 --b-public 10.199.1.2:5002 \\
            --tcp 10.199.1.2:8080=10.199.2.1:8080 \\
            [--loss 5 --delay 30 --jitter 10 --reorder 2 --seed 1]
"""

import argparse
import asyncio
import heapq
import random
import signal
import socket
import sys


def addr(s):
    host, port = s.rsplit(":", 1)
    return (host, int(port))


class Link:
    """One direction: datagrams in on `inbound` leave from `outbound` to `to`."""

    def __init__(self, name, outbound, to, args, rng, loop):
        self.name, self.outbound, self.to = name, outbound, to
        self.loss, self.reorder = args.loss / 100, args.reorder / 100
        self.delay, self.jitter = args.delay / 1000, args.jitter / 1000
        self.rng, self.loop = rng, loop
        self.held = []  # (due, seq, datagram)
        self.seq = 0
        self.timer = None
        self.counts = {"in": 0, "dropped": 0, "out": 0, "immediate": 0}

    def datagram(self, data):
        self.counts["in"] += 1
        if self.rng.random() < self.loss:
            self.counts["dropped"] += 1
            return
        now = self.loop.time()
        if self.delay == 0 or self.rng.random() < self.reorder:
            self.counts["immediate"] += 1
            self.send(data)
            return
        due = now + self.delay + self.rng.uniform(-self.jitter, self.jitter)
        self.seq += 1
        heapq.heappush(self.held, (due, self.seq, data))
        self.arm()

    def arm(self):
        if self.timer is not None or not self.held:
            return
        self.timer = self.loop.call_at(self.held[0][0], self.release)

    def release(self):
        self.timer = None
        now = self.loop.time()
        while self.held and self.held[0][0] <= now:
            self.send(heapq.heappop(self.held)[2])
        self.arm()

    def send(self, data):
        try:
            self.outbound.sendto(data, self.to)
            self.counts["out"] += 1
        except OSError:
            pass


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def tcp_forward(listen, to):
    async def handle(r1, w1):
        try:
            r2, w2 = await asyncio.open_connection(*to)
        except OSError:
            w1.close()
            return
        await asyncio.gather(pipe(r1, w2), pipe(r2, w1))

    return await asyncio.start_server(handle, *listen)


def udp(bind):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(bind)
    s.setblocking(False)
    return s


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--a", type=addr, required=True, help="peer A's bound address")
    p.add_argument("--a-public", type=addr, required=True, help="A as B reaches it")
    p.add_argument("--b", type=addr, required=True, help="peer B's bound address")
    p.add_argument("--b-public", type=addr, required=True, help="B as A reaches it")
    p.add_argument("--tcp", action="append", default=[], help="LISTEN=TARGET")
    p.add_argument("--loss", type=float, default=0.0, help="percent dropped")
    p.add_argument("--delay", type=float, default=0.0, help="milliseconds")
    p.add_argument("--jitter", type=float, default=0.0, help="+- milliseconds")
    p.add_argument("--reorder", type=float, default=0.0, help="percent not delayed")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed)
    a_public, b_public = udp(args.a_public), udp(args.b_public)
    # To A: arrives on A's public address (from B), leaves from B's.
    to_a = Link("to A", b_public, args.a, args, rng, loop)
    to_b = Link("to B", a_public, args.b, args, rng, loop)

    def reader(sock, link):
        def read():
            while True:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                link.datagram(data)

        return read

    loop.add_reader(a_public, reader(a_public, to_a))
    loop.add_reader(b_public, reader(b_public, to_b))
    servers = []
    for spec in args.tcp:
        listen, to = spec.split("=")
        servers.append(await tcp_forward(addr(listen), addr(to)))
    print("impair: ready", flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for link in (to_a, to_b):
        c = link.counts
        print(
            f"impair: {link.name}: {c['in']} datagrams in, {c['dropped']} dropped, "
            f"{c['immediate']} not delayed, {c['out']} out",
            flush=True,
        )
    for s in servers:
        s.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
