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
import smtplib
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


def _die_with_parent():
    """In the child: get SIGTERM if the test process dies (e.g. killed by a
    CTest timeout), so no sink or daemon outlives its test. (dnsmasq drops
    this when it changes credentials at start; it can outlive a SIGKILLed
    test, harmlessly, on its own port.)"""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PDEATHSIG
    except Exception:
        pass


def spawn(argv, out_path, cwd=None):
    """Popen argv with stdout+stderr appended to out_path, stdin closed, and
    SIGTERM on the test process's death."""
    out = open(out_path, "ab")
    try:
        return subprocess.Popen(argv, cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)
    finally:
        out.close()


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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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
    @staticmethod
    def _check(name, allow_root=False):
        bad = set(',/# "\\\n\t=')
        if (not name.rstrip(".") and not allow_root) or bad & set(name):
            raise ValueError("bad DNS name %r" % name)
        return name

    def _add(self, name, kind, line):
        name = self._check(name).rstrip(".").lower()
        self.rules.append((name, kind, line))
        return self

    def add_mx(self, domain, mxs, ttl=None):
        """MX records; mxs = [(pref, host), ...]. ttl, if given, sets the
        world-wide TTL of MX/TXT/CNAME answers (dnsmasq has one for those)."""
        if ttl is not None:
            self.ttl = ttl
        for pref, host in mxs:
            self._check(host, allow_root=True)
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
        self._check(target)
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
        self.proc = spawn(["dnsmasq", "--keep-in-foreground",
                           "--conf-file=%s" % self.conf_path], self.out_path)

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
        """Start dnsmasq; if it already runs, apply changes (= reload())."""
        if self.proc is not None and self.proc.poll() is None:
            return self.reload()
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


# ---------------------------------------------------------------- certificates

class Cert:
    """Paths of a test CA and a server certificate it signed (PEM)."""

    def __init__(self, ca, cert, key, names, ips):
        self.ca = ca        # CA certificate: the trust anchor for verify
        self.cert = cert    # server certificate
        self.key = key      # server private key
        self.names = names
        self.ips = ips


def _openssl(*args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s"
                           % (args[0], r.stderr.decode("utf-8", "replace")))


def make_cert(directory, names=("mx.test",), ips=("127.0.0.1",),
              days=2):
    """Make (once per directory) a test CA, then a server certificate for
    DNS names `names` and IP addresses `ips` signed by it (P-256 keys)."""
    os.makedirs(directory, exist_ok=True)
    ca, ca_key = (os.path.join(directory, n) for n in ("ca.pem", "ca.key"))
    if not os.path.exists(ca):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ca_key,
                 "-out", ca, "-days", str(days), "-subj",
                 "/CN=mxbatch test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    base = os.path.join(directory, "server-%d" % len(os.listdir(directory)))
    key, csr, cert, ext = (base + e for e in (".key", ".csr", ".pem",
                                              ".ext"))
    san = ["DNS:%s" % n for n in names] + ["IP:%s" % i for i in ips]
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                "subjectAltName=%s\n" % ",".join(san))
    _openssl("req", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
             "-out", csr, "-subj", "/CN=%s" % (names[0] if names else ips[0]))
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
             "-CAcreateserial", "-out", cert, "-days", str(days),
             "-extfile", ext)
    return Cert(ca, cert, key, list(names), list(ips))


# -------------------------------------------------------------------- sink

def _read_jsonl(path):
    out = []
    try:
        with open(path, "r", errors="replace") as f:
            for line in f:
                if line.endswith("\n"):
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


class Sink:
    """tests/tools/mxsink on one or more loopback IPs, port world.smtp_port.

    Sink(world, ["127.0.1.5", "127.0.1.6"], config={...}, tls=False)
      config      the mxsink JSON behaviour (docs/testing.md), or None
      tls         False; True (a cert for hostname + the IPs is made); or a
                  Cert from make_cert()
      save_bodies keep each body as a file (records get "body_file")
      hostname    the sink's greeting/EHLO name (config "hostname")
    Started at construction; stopped by world.close() or .stop().
    """

    def __init__(self, world, addresses, config=None, tls=False,
                 save_bodies=False, hostname=None, start=True):
        if isinstance(addresses, str):
            addresses = [addresses]
        self.world = world
        self.addresses = list(addresses)
        self.config = dict(config or {})
        if hostname is not None:
            self.config["hostname"] = hostname
        world.sinks.append(self)
        n = len(world.sinks)
        self.dir = world.path("sink%d" % n)
        os.makedirs(self.dir, exist_ok=True)
        self.log_path = os.path.join(self.dir, "mxsink.jsonl")
        self.config_path = os.path.join(self.dir, "mxsink.json")
        self.out_path = os.path.join(self.dir, "mxsink.out")
        self.bodies_dir = os.path.join(self.dir, "bodies") \
            if save_bodies else None
        self.cert = None
        if tls is True:
            name = self.config.get("hostname", "mxsink.test")
            self.cert = make_cert(world.path("certs"), [name],
                                  self.addresses)
        elif tls:
            self.cert = tls
        self.proc = None
        self._log_cache = []
        self._log_offset = 0
        self.exit_status = None
        self.failure = None  # set when mxsink exits badly (World.close raises)
        self.generation = 0
        if start:
            self.start()

    @property
    def port(self):
        return self.world.smtp_port

    def addr(self, i=0):
        """(ip, port) of the i-th address, for socket/smtplib clients."""
        return (self.addresses[i], self.port)

    def _argv(self):
        argv = [tool_path("mxsink"), "--log", self.log_path,
                "--config", self.config_path]
        for a in self.addresses:
            host = "[%s]" % a if ":" in a else a
            argv += ["--listen", "%s:%d" % (host, self.port)]
        if self.bodies_dir:
            os.makedirs(self.bodies_dir, exist_ok=True)
            argv += ["--save-bodies", self.bodies_dir]
        if self.cert:
            argv += ["--tls-cert", self.cert.cert, "--tls-key", self.cert.key]
        return argv

    def _write_config(self, config):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(config, f, indent=1)
        os.replace(tmp, self.config_path)

    def _out(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _ready(self):
        if any(r.get("type") == "ready" and r.get("pid") == self.proc.pid
               for r in self.records()):
            return True
        if self.proc.poll() is not None:
            raise RuntimeError("mxsink exited with %s: %s"
                               % (self.proc.returncode, self._out()))
        return False

    def start(self):
        """Start mxsink (again, after stop(): same addresses and port; the
        log continues)."""
        self._write_config(self.config)
        self.generation = 0
        for attempt in range(5):
            first = self.world._smtp_port is None
            if first:
                self.world._smtp_port = free_port()
            self.proc = spawn(self._argv(), self.out_path)
            try:
                wait_until(self._ready, timeout=10, what="mxsink ready")
                return self
            except RuntimeError:
                stop_process(self.proc)
                self.proc = None
                if not (first and attempt < 4 and
                        "cannot listen" in self._out()):
                    raise
                self.world._smtp_port = None  # port taken: pick another
        return self

    def stop(self):
        """SIGTERM; returns mxsink's exit status (0 unless it failed)."""
        if self.proc is not None:
            self.exit_status = stop_process(self.proc)
            if self.exit_status not in (0, None):
                self.failure = "mxsink exited with %s: %s" % (
                    self.exit_status, self._out()[-3000:])
        self.proc = None
        return self.exit_status

    def kill(self):
        """SIGKILL the sink (a dying exchanger); not counted as a failure."""
        if self.proc is not None:
            self.proc.kill()
            self.exit_status = self.proc.wait()
        self.proc = None

    def reconfigure(self, config, timeout=10):
        """Replace the behaviour (full config, not a patch): rewrite the file,
        SIGHUP, wait until mxsink reports it applied; ValueError if refused."""
        old, self.config = self.config, dict(config)
        self._write_config(self.config)
        want = self.generation + 1
        self.proc.send_signal(signal.SIGHUP)

        def applied():
            found = None
            for r in self.records():  # the last match: this process's
                if r.get("type") == "ready" and r.get("pid") == self.proc.pid:
                    found = None
                elif r.get("type") == "config" and \
                        r.get("generation") == want:
                    found = r
            return found
        r = wait_until(applied, timeout=timeout, what="mxsink reload")
        self.generation = want
        if not r["ok"]:
            self.config = old  # what it still runs, also after a restart
            self._write_config(old)
            raise ValueError("mxsink refused its config: %s" % r["error"])

    # -- the log
    def records(self):
        """Every JSON record of the log so far (ready/config/connect/
        transaction/connection/stop), read incrementally."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # complete lines only
        for line in data[:end].splitlines():
            if line.strip():
                self._log_cache.append(json.loads(line))
        self._log_offset += end
        return list(self._log_cache)

    @staticmethod
    def _on_ip(r, ip):
        return ip is None or r["listen"].rsplit(":", 1)[0].strip("[]") == ip

    def _select(self, rtype, ip=None, **match):
        out = []
        for r in self.records():
            if r.get("type") != rtype or not self._on_ip(r, ip):
                continue
            if all(r.get(k) == v for k, v in match.items()):
                out.append(r)
        return out

    def transactions(self, ip=None, **match):
        """Transaction records, optionally of one listen IP and/or with
        fields equal to match (e.g. status="delivered")."""
        return self._select("transaction", ip, **match)

    def connections(self, ip=None, **match):
        return self._select("connection", ip, **match)

    def _concurrency(self, ip):
        cur = peak = 0
        for r in self.records():
            if r.get("type") not in ("connect", "connection") or \
                    not self._on_ip(r, ip):
                continue
            cur += 1 if r["type"] == "connect" else -1
            peak = max(peak, cur)
        return cur, peak

    def open_connections(self, ip=None):
        """Connections accepted and not yet closed (from the log)."""
        return self._concurrency(ip)[0]

    def max_concurrent(self, ip=None):
        """The most connections that were open at the same time (exact: the
        log is written in event order)."""
        return self._concurrency(ip)[1]

    def delivered(self, ip=None):
        """Accepted recipients of delivered transactions, in log order."""
        return [rc["to"] for t in self.transactions(ip, status="delivered")
                for rc in t["rcpts"] if rc["reply"] and
                rc["reply"].startswith("2")]

    def wait_transactions(self, n, timeout=10, ip=None, **match):
        """Wait until at least n matching transactions are logged."""
        return wait_until(lambda: (lambda t: t if len(t) >= n else None)(
            self.transactions(ip, **match)), timeout=timeout,
            what="%d transactions in %s" % (n, self.log_path))

    def wait_connections(self, n, timeout=10, ip=None, **match):
        return wait_until(lambda: (lambda c: c if len(c) >= n else None)(
            self.connections(ip, **match)), timeout=timeout,
            what="%d connections in %s" % (n, self.log_path))

    def body(self, txn):
        """The saved body (bytes) of a transaction record (save_bodies=True)."""
        with open(txn["body_file"], "rb") as f:
            return f.read()


class RawSmtp:
    """A bare SMTP client for tests that need exact bytes (pipelining, BDAT,
    faults): send() writes raw bytes, reply() reads one (multi-line) reply
    as (code, [lines]); code is None when the server closed, "timeout" when
    it said nothing within the timeout."""

    def __init__(self, addr, timeout=5.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def reply(self, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    return ("timeout", lines)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return (None, lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            line = line.decode("utf-8", "replace")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return (int(line[:3]), lines)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class UnixSMTP(smtplib.SMTP):
    """smtplib.SMTP over a Unix stream socket (mxbatchd's routing door)."""

    def __init__(self, path, timeout=10, local_hostname="client.test"):
        self.unix_path = path
        super().__init__(local_hostname=local_hostname, timeout=timeout)
        code, msg = self.connect()
        if code != 220:  # as smtplib.SMTP(host) does
            self.close()
            raise smtplib.SMTPConnectError(code, msg)

    def _get_socket(self, host, port, timeout):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        return s


def merge(*dicts):
    """Config sections merged left to right: {section: {key: value}}."""
    out = {}
    for d in dicts:
        for sect, keys in d.items():
            out.setdefault(sect, {}).update(keys)
    return out


# ------------------------------------------------------------------ daemon

class Daemon:
    """mxbatchd on a generated INI config in the world's temp dir.

    Daemon(world, sections={"delivery": {"retry_schedule": "1s"},
                            'site "default"': {"connections": "2"}})
    The defaults point it at the world: [dns] servers = the DnsWorld
    (started now if the test has not started it: all names NXDOMAIN),
    [delivery] smtp_port = world.smtp_port, allow_private_destinations = yes,
    spool, pid file, routing socket, admin port, token and delivery log in
    the temp dir. sections override or add keys (a value None drops a key).
    Started at construction (waits for "mxbatchd started"); stop() sends
    SIGTERM, SIGKILL after 10 s, and returns the exit status.
    """

    READY = "mxbatchd started"

    def __init__(self, world, sections=None, start=True, binary=None,
                 extra_args=()):
        self.world = world
        world.daemons.append(self)
        n = len(world.daemons)
        self.dir = world.path("daemon%d" % n)
        os.makedirs(self.dir, exist_ok=True)
        self.binary = binary or os.path.join(BUILD_DIR, "mxbatchd")
        self.config_path = os.path.join(self.dir, "mxbatch.conf")
        self.out_path = os.path.join(self.dir, "mxbatchd.out")
        self.routing_socket = os.path.join(self.dir, "routing.sock")
        self.delivery_log = os.path.join(self.dir, "delivery.jsonl")
        self.token_file = os.path.join(self.dir, "admin.token")
        self.admin_port = free_port()
        self.extra_args = list(extra_args)
        self.sections = self.default_sections()
        for name, keys in (sections or {}).items():
            sect = self.sections.setdefault(name, {})
            for k, v in keys.items():
                if v is None:
                    sect.pop(k, None)
                else:
                    sect[k] = v
        self.proc = None
        if start:
            self.start()

    def default_sections(self):
        w = self.world
        if w.dns.proc is None:  # never let a test daemon ask real DNS
            w.dns.start()
        s = {
            "server": {"hostname": "mxbatch.test",
                       "pid_file": os.path.join(self.dir, "mxbatchd.pid")},
            "spool": {"path": os.path.join(self.dir, "spool")},
            "delivery": {"smtp_port": str(w.smtp_port),
                         "allow_private_destinations": "yes"},
            'listen "routing"': {"socket": self.routing_socket},
            "admin": {"listen": "127.0.0.1:%d" % self.admin_port,
                      "token_file": self.token_file},
            "log": {"delivery_log": self.delivery_log},
        }
        s["dns"] = {"servers": w.dns.server}
        providers = os.path.join(SOURCE_DIR, "contrib", "providers.conf")
        if os.path.exists(providers):
            s["delivery"]["providers_file"] = providers
        return s

    def config_text(self):
        out = []
        for name, keys in self.sections.items():
            out.append("[%s]" % name)
            out += ["%s = %s" % (k, v) for k, v in keys.items()]
            out.append("")
        return "\n".join(out)

    ADMIN_TAKEN = "[admin] listen: cannot bind"

    def start(self, timeout=20):
        """Start and wait for READY. free_port() only finds the admin port
        free at that moment: a test running in parallel may bind it before
        the daemon does, which then exits at start. If it did, and the admin
        port is still the harness's own, pick another and start again (as
        for mxsink and dnsmasq); any other start failure is raised."""
        for attempt in range(5):
            with open(self.config_path, "w") as f:
                f.write(self.config_text())
            seen = len(self.log_text())
            self.proc = spawn([self.binary, "--foreground", "--config",
                               self.config_path] + self.extra_args,
                              self.out_path, cwd=self.dir)
            try:
                self.wait_log(self.READY, timeout=timeout)
                return self
            except RuntimeError:
                ours = (self.sections.get("admin", {}).get("listen") ==
                        "127.0.0.1:%d" % self.admin_port)
                if (attempt == 4 or not ours or
                        self.ADMIN_TAKEN not in self.log_text()[seen:]):
                    raise
                self.admin_port = free_port()
                self.sections["admin"]["listen"] = \
                    "127.0.0.1:%d" % self.admin_port

    def log_text(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, needle, timeout=20):
        """Wait until the daemon's stderr/stdout contains needle."""
        def seen():
            if needle in self.log_text():
                return True
            if self.proc.poll() is not None:
                raise RuntimeError("mxbatchd exited with %s before logging "
                                   "%r:\n%s" % (self.proc.returncode, needle,
                                                self.log_text()[-4000:]))
            return False
        return wait_until(seen, timeout=timeout, what=repr(needle))

    def stop(self, timeout=10):
        """SIGTERM (SIGKILL after timeout); the exit status."""
        rc = stop_process(self.proc, timeout)
        return rc

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def smtp(self, timeout=10):
        """An smtplib client connected to the routing socket (use `with`)."""
        return UnixSMTP(self.routing_socket, timeout=timeout)

    def submit(self, mail_from, rcpts, body, mail_options=(),
               rcpt_options=()):
        """Submit one message through the routing socket; returns smtplib's
        dict of refused recipients (raises on a refused message)."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        with self.smtp() as c:
            return c.sendmail(mail_from, list(rcpts), body,
                              list(mail_options), list(rcpt_options))

    def delivery_records(self):
        """The JSON-lines delivery log so far."""
        return _read_jsonl(self.delivery_log)

    def admin_token(self):
        with open(self.token_file) as f:
            return f.read().strip()

    def admin(self, method, path, body=None, timeout=10):
        """One admin API request: (status, parsed JSON or text)."""
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port,
                                       timeout=timeout)
        try:
            data = json.dumps(body) if body is not None else None
            c.request(method, path, body=data, headers={
                "Authorization": "Bearer %s" % self.admin_token(),
                "Content-Type": "application/json"})
            r = c.getresponse()
            text = r.read().decode("utf-8", "replace")
        finally:
            c.close()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


# -------------------------------------------------------------------- World

class World:
    """One test's world: a temp dir, a DnsWorld, sinks and daemons.

    World(self) registers close() with addCleanup; World(cls) in setUpClass
    with addClassCleanup (runs even if setUpClass fails half-way). The temp dir is
    removed at close unless MXB_KEEP_TMP=1 is set in the environment.
    """

    def __init__(self, testcase=None, ttl=300):
        self.dir = tempfile.mkdtemp(prefix="mxb-world-")
        self.dns = DnsWorld(os.path.join(self.dir, "dns"), ttl=ttl)
        self._smtp_port = None
        self.sinks = []
        self.daemons = []
        self._closed = False
        if isinstance(testcase, type):  # World(cls) in setUpClass
            testcase.addClassCleanup(self.close)
        elif testcase is not None:
            testcase.addCleanup(self.close)

    @property
    def smtp_port(self):
        """The one SMTP port of every sink in this world (the daemon has one
        [delivery] smtp_port); chosen when first needed."""
        if self._smtp_port is None:
            self._smtp_port = free_port()
        return self._smtp_port

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def sink(self, addresses, config=None, **kw):
        """Start a Sink in this world (see Sink)."""
        return Sink(self, addresses, config, **kw)

    def daemon(self, sections=None, **kw):
        """Start mxbatchd in this world (see Daemon)."""
        return Daemon(self, sections, **kw)

    def cert(self, names=("mx.test",), ips=("127.0.0.1",)):
        """A server certificate signed by this world's test CA."""
        return make_cert(self.path("certs"), names, ips)

    def close(self):
        if self._closed:
            return
        self._closed = True
        for d in reversed(self.daemons):
            d.stop()
        for s in reversed(self.sinks):
            s.stop()
        self.dns.stop()
        failures = [s.failure for s in self.sinks if s.failure]
        if os.environ.get("MXB_KEEP_TMP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
        if failures:  # a crashed or leaking sink is a test-world bug
            raise RuntimeError("\n".join(failures))
