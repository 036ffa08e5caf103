#!/usr/bin/env python3
"""smtpc_bench.py - throughput of the SMTP client (src/smtpclient).

Sends M messages of 4 KiB with 100 recipients each (one transaction per
message) to one sink on a loopback address, over 1 and over 20 connections,
with tests/tools/smtpc_send, and prints recipients/s and CPU-us per
delivered recipient of the client process.

  contrib/bench/smtpc_bench.py [--build-dir build] [--sink mxsink|smtp-sink]
                               [--messages 5000] [--connections 1,20]
                               [--modes bdat,data] [--repeat 3]

--sink mxsink: the project's test MX (logs every transaction as JSON and
hashes every body, so it is the slower side). --sink smtp-sink: Postfix's
smtp-sink (no CHUNKING: DATA only), the reference of the issue's ceiling.
Both sink and client share the machine's cores: the figures are a floor.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))


def free_port(ip):
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(ip, port, proc, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit("sink exited early")
        try:
            socket.create_connection((ip, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("sink did not start")


def start_sink(kind, build, ip, port, tmp):
    if kind == "mxsink":
        argv = [os.path.join(build, "tests", "tools", "mxsink"), "--listen",
                "%s:%d" % (ip, port), "--log", os.path.join(tmp, "sink.jsonl")]
    else:
        if shutil.which("smtp-sink") is None:
            sys.exit("smtp-sink not found (Debian package postfix)")
        argv = ["smtp-sink", "-u", "nobody", "%s:%d" % (ip, port), "1024"]
    out = open(os.path.join(tmp, "sink.out"), "wb")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    wait_port(ip, port, proc)
    return proc, argv


def run(build, ip, port, messages, conns, mode):
    argv = [os.path.join(build, "tests", "tools", "smtpc_send"),
            "--mx", "sink.bench=%s" % ip, "--port", str(port),
            "--allow-private", "127.0.0.0/8", "--gen-rcpts", "100",
            "--gen-domain", "bench.test", "--messages", str(messages),
            "--connections", str(conns), "--body-size", "4096", "--quiet"]
    if mode == "data":
        argv.append("--no-chunking")
    r = subprocess.run(argv, capture_output=True, timeout=600)
    if r.returncode != 0:
        sys.exit("smtpc_send failed: %s" % r.stderr.decode(errors="replace"))
    summ = [json.loads(l) for l in r.stdout.decode().splitlines()
            if '"summary"' in l][-1]
    return summ, argv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(SRC, "build"))
    ap.add_argument("--sink", choices=("mxsink", "smtp-sink"), default="mxsink")
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--connections", default="1,20")
    ap.add_argument("--modes", default="bdat,data")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ip", default="127.0.1.250")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="smtpc-bench-")
    port = free_port(a.ip)
    sink, sink_argv = start_sink(a.sink, a.build_dir, a.ip, port, tmp)
    try:
        print("sink: %s" % " ".join(sink_argv))
        print("%-6s %5s %9s %12s %12s %9s" % ("mode", "conns", "rcpts",
              "rcpt/s", "cpu-us/rcpt", "rss-KiB"))
        for mode in a.modes.split(","):
            if a.sink == "smtp-sink" and mode == "bdat":
                continue            # smtp-sink offers no CHUNKING
            for c in (int(x) for x in a.connections.split(",")):
                best = None
                for _ in range(a.repeat):
                    s, argv = run(a.build_dir, a.ip, port, a.messages, c, mode)
                    if s["delivered"] != a.messages * 100:
                        sys.exit("not everything delivered: %s" % s)
                    if best is None or s["rcpt_per_s"] > best["rcpt_per_s"]:
                        best = s
                print("%-6s %5d %9d %12.0f %12.2f %9d" % (
                    mode, c, best["delivered"], best["rcpt_per_s"],
                    best["cpu_us_per_rcpt"], best["maxrss_kb"]))
        print("client: %s" % " ".join(argv))
    finally:
        sink.send_signal(signal.SIGTERM)
        try:
            sink.wait(10)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
