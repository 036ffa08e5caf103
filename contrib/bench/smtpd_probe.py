#!/usr/bin/env python3
"""smtpd_probe.py - end-of-data -> 250 latency seen by a client, while a
load runs: one extra SMTP session sends a 4 KiB message every 5 ms or so
and times each final "." to its reply. Prints JSON:
{"n":..., "p50_ms":..., "p90_ms":..., "p99_ms":..., "max_ms":...}

usage: smtpd_probe.py HOST PORT STOPFILE
Runs until STOPFILE exists (the load generator finished).
"""
import json
import os
import socket
import sys
import time


def reply(f):
    while True:
        line = f.readline()
        if not line:
            raise EOFError("server closed the connection")
        if line[3:4] != b"-":
            return int(line[:3])


def main():
    host, port, stopfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    reply(f)
    s.sendall(b"EHLO probe.bench\r\n")
    reply(f)
    body = b"Subject: probe\r\n\r\n" + (b"x" * 78 + b"\r\n") * 51
    lat = []
    while not os.path.exists(stopfile):
        s.sendall(b"MAIL FROM:<probe@example.com>\r\n")
        reply(f)
        s.sendall(b"RCPT TO:<probe@example.net>\r\n")
        reply(f)
        s.sendall(b"DATA\r\n")
        reply(f)
        s.sendall(body)
        t = time.perf_counter()
        s.sendall(b".\r\n")
        code = reply(f)
        lat.append((time.perf_counter() - t) * 1000)
        time.sleep(0.005)  # sample the load, do not become part of it
        if code != 250:
            print("probe: got %d" % code, file=sys.stderr)
            break
    s.sendall(b"QUIT\r\n")
    lat.sort()
    n = len(lat)
    pick = (lambda q: round(lat[min(n - 1, int(n * q))], 3)) if n else (lambda q: None)
    print(json.dumps({"n": n, "p50_ms": pick(0.5), "p90_ms": pick(0.9),
                      "p99_ms": pick(0.99), "max_ms": pick(1.0)}))


if __name__ == "__main__":
    main()
