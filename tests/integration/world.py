"""world.py - the test world every integration test runs in.

A World owns one fresh temporary directory and every process started in it:

  * DnsWorld: a real dnsmasq on 127.0.0.1:<free port> serving zones the test
    describes in Python (MX, A, AAAA, null MX, NXDOMAIN, SERVFAIL, timeout,
    TXT, CNAME), with a query log so tests can count lookups, plus a tiny
    stdlib DNS client (dns_query) to check what it answers.
  * Sink: tests/tools/mxsink, the test MX server, on one or more loopback
    addresses 127.0.1.N sharing one SMTP port per World; its JSON-lines log
    is read back with .transactions() / .connections().
  * Daemon: mxbatchd started on a generated INI config pointing at the above.
  * make_cert(): a test CA and a server certificate made with the openssl CLI.

Everything is stopped by PID at cleanup, also when a test fails. Only the
Python 3 standard library is used. See docs/testing.md for a walk-through.
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MXB_SOURCE_DIR",
                            os.path.normpath(os.path.join(HERE, "..", "..")))
BUILD_DIR = os.environ.get("MXB_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))


def tool_path(name):
    """Path of a test tool binary built under tests/tools."""
    return os.path.join(BUILD_DIR, "tests", "tools", name)


def free_port(host="127.0.0.1"):
    """A TCP+UDP port free on host right now (bound once, then released)."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind((host, 0))
            port = t.getsockname()[1]
            u.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port found")


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value; return it or raise."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s"
                               % (timeout, what))
        time.sleep(interval)


def stop_process(proc, term_timeout=10.0):
    """SIGTERM proc (a Popen), SIGKILL after term_timeout; return its status."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=term_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass
    return proc.returncode


# ---------------------------------------------------------------- DNS client

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15,
          "TXT": 16, "AAAA": 28}
QTYPE_NAMES = {v: k for k, v in QTYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN",
          4: "NOTIMP", 5: "REFUSED"}


class DnsAnswer:
    """A parsed DNS reply: rcode name, aa flag, answer records.

    records: list of (name, type_name, ttl, value) where value is
    (pref, host) for MX ("" for the root, i.e. a null MX), a text address for
    A/AAAA, a list of str for TXT, a name for CNAME/PTR/NS, else raw bytes.
    """

    def __init__(self, rcode, aa, records):
        self.rcode = rcode
        self.aa = aa
        self.records = records

    def values(self, rtype):
        return [r[3] for r in self.records if r[1] == rtype]

    def __repr__(self):
        return "DnsAnswer(%s, aa=%s, %r)" % (self.rcode, self.aa, self.records)


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def _read_name(buf, off):
    labels, end, jumps = [], None, 0
    while True:
        n = buf[off]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | buf[off + 1]
            jumps += 1
            if jumps > 50:
                raise ValueError("compression loop")
            continue
        off += 1
        if n == 0:
            break
        labels.append(buf[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), (end if end is not None else off)


def _rdata_value(buf, off, rtype, rdlen):
    rd = buf[off:off + rdlen]
    if rtype == 1:
        return socket.inet_ntop(socket.AF_INET, rd)
    if rtype == 28:
        return socket.inet_ntop(socket.AF_INET6, rd)
    if rtype == 15:
        return (struct.unpack("!H", rd[:2])[0], _read_name(buf, off + 2)[0])
    if rtype in (2, 5, 12):
        return _read_name(buf, off)[0]
    if rtype == 16:
        strings, i = [], 0
        while i < len(rd):
            strings.append(rd[i + 1:i + 1 + rd[i]].decode("utf-8", "replace"))
            i += 1 + rd[i]
        return strings
    return rd


def parse_dns_reply(buf):
    """Parse a reply packet into a DnsAnswer."""
    _, flags, qd, an, _, _ = struct.unpack("!HHHHHH", buf[:12])
    off = 12
    for _ in range(qd):
        _, off = _read_name(buf, off)
        off += 4
    records = []
    for _ in range(an):
        name, off = _read_name(buf, off)
        rtype, _, ttl, rdlen = struct.unpack("!HHIH", buf[off:off + 10])
        off += 10
        records.append((name, QTYPE_NAMES.get(rtype, str(rtype)), ttl,
                        _rdata_value(buf, off, rtype, rdlen)))
        off += rdlen
    return DnsAnswer(RCODES.get(flags & 0xF, str(flags & 0xF)),
                     bool(flags & 0x400), records)


def dns_query(name, qtype="A", port=53, server="127.0.0.1", timeout=2.0):
    """Ask server:port one question over UDP; DnsAnswer, or None on timeout."""
    qid = random.randrange(65536)
    pkt = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    pkt += _encode_name(name) + struct.pack("!HH", QTYPES[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, (server, port))
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            buf = s.recv(65535)
            if len(buf) >= 12 and struct.unpack("!H", buf[:2])[0] == qid:
                return parse_dns_reply(buf)
    except socket.timeout:
        return None
    finally:
        s.close()


# ----------------------------------------------------------- fake upstreams

class _ServfailUpstream:
    """In-process UDP 'upstream' answering SERVFAIL to every query.

    dnsmasq forwards the SERVFAIL names to it (server=/name/127.0.0.1#port)
    and passes the SERVFAIL on; dnsmasq alone can only say REFUSED.
    """

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                buf, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(buf) < 12:
                continue
            qid, flags = struct.unpack("!HH", buf[:4])
            out = struct.pack("!HH", qid, 0x8000 | (flags & 0x0100) | 0x80 | 2)
            out += buf[4:6] + b"\0" * 6 + buf[12:]
            try:
                self.sock.sendto(out, addr)
            except OSError:
                pass

    def close(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


class _BlackholeUpstream:
    """A bound UDP socket nobody reads: queries sent to it never answer."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


# ------------------------------------------------------------------ dnsmasq

class DnsWorld:
    """A dnsmasq serving zones described in Python.

    Every name not described answers NXDOMAIN (dnsmasq "local=/#/"), names
    that have some records answer NODATA for the other types. Records:
      add_mx(domain, [(pref, host), ...])    MX set (TTL = the world ttl)
      add_null_mx(domain)                    RFC 7505 "MX 0 ."
      add_a(host, [ips], ttl=None)           A (per-record TTL allowed)
      add_aaaa(host, [ips], ttl=None)        AAAA
      add_txt(name, [strings])               TXT (one record, several strings)
      add_cname(alias, target)               CNAME
      add_nxdomain_zone(suffix)              suffix and all below: NXDOMAIN
      add_servfail(name)                     name and all below: SERVFAIL
      add_timeout(name)                      name and all below: no answer
      remove(name)                           drop every rule given for name
    Changes take effect at start() or reload() (a restart on the same port;
    dnsmasq re-reads only hosts files on SIGHUP). The query log survives
    reloads, so query_count() counts over the whole test.
    """

    def __init__(self, tmpdir, ttl=300, port=None):
        self.dir = tmpdir
        os.makedirs(self.dir, exist_ok=True)
        self.ttl = ttl
        self.port = port
        self.conf_path = os.path.join(self.dir, "dnsmasq.conf")
        self.log_path = os.path.join(self.dir, "dnsmasq.log")
        self.out_path = os.path.join(self.dir, "dnsmasq.out")
        self.rules = []  # (name, kind, option line)
        self.proc = None
        self._servfail = None
        self._blackhole = None

    # -- describing zones
    def _add(self, name, kind, line):
        name = name.rstrip(".").lower()
        if not name or "," in name or "/" in name or " " in name:
            raise ValueError("bad DNS name %r" % name)
        self.rules.append((name, kind, line))
        return self

    def add_mx(self, domain, mxs, ttl=None):
        """MX records; mxs = [(pref, host), ...]. ttl, if given, sets the
        world-wide TTL of MX/TXT/CNAME answers (dnsmasq has one for those)."""
        if ttl is not None:
            self.ttl = ttl
        for pref, host in mxs:
            self._add(domain, "mx", "mx-host=%s,%s,%d"
                      % (domain.rstrip("."), host.rstrip(".") or ".",
                         int(pref)))
        return self

    def add_null_mx(self, domain):
        return self._add(domain, "mx", "mx-host=%s,.,0" % domain.rstrip("."))

    def _add_addr(self, host, ips, ttl, family):
        if isinstance(ips, str):
            ips = [ips]
        for ip in ips:
            socket.inet_pton(family, ip)  # ValueError/OSError on bad input
            line = "host-record=%s,%s" % (host.rstrip("."), ip)
            if ttl is not None:
                line += ",%d" % int(ttl)
            self._add(host, "addr", line)
        return self

    def add_a(self, host, ips, ttl=None):
        return self._add_addr(host, ips, ttl, socket.AF_INET)

    def add_aaaa(self, host, ips, ttl=None):
        return self._add_addr(host, ips, ttl, socket.AF_INET6)

    def add_txt(self, name, strings):
        if isinstance(strings, str):
            strings = [strings]
        quoted = ",".join('"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')
                          for s in strings)
        return self._add(name, "txt", "txt-record=%s,%s"
                         % (name.rstrip("."), quoted))

    def add_cname(self, alias, target):
        return self._add(alias, "cname", "cname=%s,%s"
                         % (alias.rstrip("."), target.rstrip(".")))

    def add_nxdomain_zone(self, suffix):
        return self._add(suffix, "nx", "local=/%s/" % suffix.rstrip("."))

    def add_servfail(self, name):
        return self._add(name, "servfail", None)

    def add_timeout(self, name):
        return self._add(name, "timeout", None)

    def remove(self, name):
        """Forget every record/behaviour given for exactly this name."""
        name = name.rstrip(".").lower()
        self.rules = [r for r in self.rules if r[0] != name]
        return self

    # -- config and process
    def config_text(self):
        lines = ["port=%d" % self.port, "listen-address=127.0.0.1",
                 "bind-interfaces", "no-resolv", "no-hosts", "no-poll",
                 "user=root", "pid-file=", "log-queries",
                 "log-facility=%s" % self.log_path,
                 "local-ttl=%d" % self.ttl, "cache-size=0",
                 "local=/#/"]
        for name, kind, line in self.rules:
            if kind == "servfail":
                lines.append("server=/%s/127.0.0.1#%d"
                             % (name, self._servfail.port))
            elif kind == "timeout":
                lines.append("server=/%s/127.0.0.1#%d"
                             % (name, self._blackhole.port))
            else:
                lines.append(line)
        return "\n".join(lines) + "\n"

    def _spawn(self):
        with open(self.conf_path, "w") as f:
            f.write(self.config_text())
        out = open(self.out_path, "ab")
        try:
            self.proc = subprocess.Popen(
                ["dnsmasq", "--keep-in-foreground",
                 "--conf-file=%s" % self.conf_path],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            out.close()

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("dnsmasq exited with %s: %s"
                               % (self.proc.returncode, self._out_tail()))
        return dns_query("mxb-ready.invalid", "A", self.port,
                         timeout=0.2) is not None

    def _out_tail(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def start(self):
        if self._servfail is None:
            self._servfail = _ServfailUpstream()
            self._blackhole = _BlackholeUpstream()
        fixed = self.port is not None
        for attempt in range(5):
            if not fixed:
                self.port = free_port()
            self._spawn()
            try:
                wait_until(self._ready, timeout=10, what="dnsmasq to answer")
                return self
            except RuntimeError:
                stop_process(self.proc)
                self.proc = None
                if fixed and attempt < 4:
                    time.sleep(0.2)  # old instance's port not released yet
                elif attempt == 4 or "Address already in use" not in \
                        self._out_tail():
                    raise
        return self

    def reload(self):
        """Apply zone changes: restart dnsmasq on the same port."""
        stop_process(self.proc)
        self.proc = None
        return self.start()  # self.port is set: same port again

    def stop(self):
        stop_process(self.proc)
        self.proc = None
        for u in (self._servfail, self._blackhole):
            if u is not None:
                u.close()
        self._servfail = self._blackhole = None

    @property
    def server(self):
        """The "[dns] servers" value for mxbatchd: 127.0.0.1:PORT."""
        return "127.0.0.1:%d" % self.port

    def query(self, name, qtype="A", timeout=2.0):
        """Ask this dnsmasq; DnsAnswer or None when it does not answer."""
        return dns_query(name, qtype, self.port, timeout=timeout)

    def query_log(self):
        """[(type, name, from_address)] of every query dnsmasq received."""
        try:
            with open(self.log_path, "r", errors="replace") as f:
                text = f.read()
        except OSError:
            return []
        return [(m.group(1), m.group(2).lower(), m.group(3)) for m in
                re.finditer(r"query\[(\w+)\] (\S+) from (\S+)", text)]

    def query_count(self, name, qtype=None):
        """How many queries for name (of qtype, or any) dnsmasq received,
        readiness probes excluded."""
        name = name.rstrip(".").lower()
        return sum(1 for t, n, _ in self.query_log()
                   if n == name and (qtype is None or t == qtype))


# -------------------------------------------------------------------- World

class World:
    """One test's world: a temp dir, a DnsWorld, sinks and daemons.

    World(testcase) registers close() with testcase.addCleanup; without a
    testcase call close() yourself (e.g. in tearDownClass). The temp dir is
    removed at close unless MXB_KEEP_TMP=1 is set in the environment.
    """

    def __init__(self, testcase=None, ttl=300):
        self.dir = tempfile.mkdtemp(prefix="mxb-world-")
        self.dns = DnsWorld(os.path.join(self.dir, "dns"), ttl=ttl)
        self.smtp_port = None  # chosen by the first Sink
        self.sinks = []
        self.daemons = []
        self._closed = False
        if testcase is not None:
            testcase.addCleanup(self.close)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def close(self):
        if self._closed:
            return
        self._closed = True
        for d in reversed(self.daemons):
            d.stop()
        for s in reversed(self.sinks):
            s.stop()
        self.dns.stop()
        if os.environ.get("MXB_KEEP_TMP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
