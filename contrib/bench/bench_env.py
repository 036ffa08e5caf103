"""bench_env.py - the benchmark's environment: DNS, sinks, both engines.

Reuses the integration test world (tests/integration/world.py) for dnsmasq,
the recording sink (mxsink) and mxbatchd, and adds what a side-by-side run
needs on top of it:

  * BenchWorld: a world whose dnsmasq listens on port 53 of a loopback
    address of its own (Postfix asks the system resolver, which cannot be
    given a port) and whose sinks listen on port 25 (Postfix cannot be told
    another destination port without giving up MX lookups);
  * Mxbatch: mxbatchd with a trusted TCP listener, its CPU/RSS from /proc;
  * Postfix: a private Postfix instance (own config and queue directories
    in the world's temp folder, chroot off, started under `unshare -m` with
    a bind-mounted resolv.conf pointing at the world's dnsmasq), stopped by
    PID;
  * proc_cpu()/proc_mem(): CPU seconds and memory of a process tree.

Every process is stopped by PID when the world closes (also on errors).
"""
import glob
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.normpath(os.path.join(HERE, "..", ".."))
os.environ.setdefault("MXB_SOURCE_DIR", SOURCE_DIR)
os.environ.setdefault("MXB_BUILD_DIR", os.path.join(SOURCE_DIR, "build-bench"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))
import world  # noqa: E402  (the integration test harness)

DNS_IP = "127.0.5.1"        # dnsmasq, port 53 (resolv.conf has no port)
POSTFIX_IP = "127.0.5.2"    # the private Postfix's smtpd, port 25
MXBATCH_IP = "127.0.5.3"    # mxbatchd's TCP listener, port 25
SMTP_PORT = 25              # every sink (Postfix's smtp client uses 25)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------ /proc

def _stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()  # fields from #3 (state) on


def proc_children(pid):
    """PIDs whose parent is pid."""
    out = []
    for p in glob.glob("/proc/[0-9]*/stat"):
        try:
            if int(_stat(int(p.split("/")[2]))[1]) == pid:
                out.append(int(p.split("/")[2]))
        except (OSError, ValueError, IndexError):
            pass
    return out


def proc_cpu(pid, tree=False):
    """CPU seconds (user+system) of pid, plus its reaped children; with
    tree, plus its live children (Postfix: master + its daemons)."""
    f = _stat(pid)
    ticks = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    if tree:
        for c in proc_children(pid):
            try:
                g = _stat(c)
                ticks += int(g[11]) + int(g[12])
            except OSError:
                pass
    return ticks / CLK_TCK


def proc_mem(pid, tree=False):
    """(rss, peak_rss, pss) in bytes of pid, summed over its live children
    with tree. The peak is the sum of each process's own peak; PSS counts
    shared pages (libraries of Postfix's many processes) once overall."""
    pids = [pid] + (proc_children(pid) if tree else [])
    rss = peak = pss = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                txt = f.read()
            with open("/proc/%d/smaps_rollup" % p) as f:
                roll = f.read()
        except OSError:
            continue
        m = re.search(r"VmRSS:\s+(\d+) kB", txt)
        h = re.search(r"VmHWM:\s+(\d+) kB", txt)
        s = re.search(r"Pss:\s+(\d+) kB", roll)
        rss += int(m.group(1)) * 1024 if m else 0
        peak += int(h.group(1)) * 1024 if h else 0
        pss += int(s.group(1)) * 1024 if s else 0
    return rss, peak, pss


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def du_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for n in files:
            try:
                total += os.lstat(os.path.join(root, n)).st_blocks * 512
            except OSError:
                pass
    return total


# ------------------------------------------------------------------- world

class BenchDns(world.DnsWorld):
    """The world's dnsmasq, on DNS_IP:53 so that a resolv.conf can name it."""

    def __init__(self, tmpdir, ttl=300):
        super().__init__(tmpdir, ttl=ttl, port=53)
        self.ip = DNS_IP

    def config_text(self):
        return super().config_text().replace(
            "listen-address=127.0.0.1", "listen-address=%s" % self.ip)

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("dnsmasq exited with %s: %s"
                               % (self.proc.returncode, self._out_tail()))
        return world.dns_query("mxb-ready.invalid", "A", 53, self.ip,
                               timeout=0.2) is not None

    @property
    def server(self):
        return "%s:53" % self.ip

    def query(self, name, qtype="A", timeout=2.0):
        return world.dns_query(name, qtype, 53, self.ip, timeout=timeout)

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def queries_since(self, offset):
        """[(qtype, name)] of the queries logged after byte offset."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [(m.group(1), m.group(2).lower()) for m in
                re.finditer(r"query\[(\w+)\] (\S+) from", text)]


class BenchWorld(world.World):
    """A test world for benchmarks: dnsmasq on DNS_IP:53, sinks on :25,
    plus the private Postfix instances started in it."""

    def __init__(self, ttl=300):
        super().__init__(None, ttl=ttl)
        os.chmod(self.dir, 0o711)  # Postfix's daemons (user postfix) pass
        self.dns = BenchDns(os.path.join(self.dir, "dns"), ttl=ttl)
        self._smtp_port = SMTP_PORT
        self.postfixes = []

    def close(self):
        for p in reversed(self.postfixes):
            p.stop()
        super().close()


# ---------------------------------------------------------------- mxbatchd

class Mxbatch:
    """mxbatchd (through world.Daemon) with a trusted TCP listener on
    MXBATCH_IP:25, so it takes the same SMTP load as Postfix."""

    name = "mxbatch"
    start_timeout = 600

    def __init__(self, w, sections=None, spool=None):
        self.world = w
        s = {'listen "bench"': {"address": "%s:%d" % (MXBATCH_IP, SMTP_PORT),
                                "trusted_networks": "127.0.0.0/8",
                                "max_connections_per_ip": "1000"}}
        for k, v in (sections or {}).items():
            s.setdefault(k, {}).update(v)
        self.daemon = world.Daemon(w, s, start=False)
        if spool:
            self.daemon.sections["spool"]["path"] = spool
        self.addr = (MXBATCH_IP, SMTP_PORT)
        self.start()

    @property
    def spool(self):
        return self.daemon.sections["spool"]["path"]

    @property
    def pid(self):
        return self.daemon.proc.pid

    def start(self):
        self.daemon.start(timeout=self.start_timeout)
        return self

    def cpu(self):
        return proc_cpu(self.pid)

    def mem(self):
        return proc_mem(self.pid)

    def stop(self):
        return self.daemon.stop(timeout=60)

    def kill9(self):
        self.daemon.proc.kill()
        self.daemon.proc.wait()

    def queued_senders(self):
        """Senders of the messages in the (stopped) spool, via spoolcat."""
        r = subprocess.run([world.tool_path("spoolcat"), self.spool],
                           capture_output=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError("spoolcat: %s" % r.stderr.decode()[-500:])
        out = []
        for line in r.stdout.splitlines():
            m = re.search(rb'"sender":\s*"([^"]*)"', line)
            if m:
                out.append(m.group(1).decode())
        return out


# ----------------------------------------------------------------- Postfix

def _fill(template, values):
    with open(os.path.join(HERE, "postfix", template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, v)
    return text


class Postfix:
    """A private Postfix instance: its own config_directory and
    queue_directory under the world's temp dir, chroot off, smtpd on
    POSTFIX_IP:25, DNS from the world's dnsmasq (resolv.conf bind-mounted in
    a private mount namespace: `unshare -m`). Never the system instance.

    extra: main.cf lines for the scenario (e.g. in_flow_delay, hold)."""

    name = "postfix"

    def __init__(self, w, extra=""):
        self.world = w
        w.postfixes.append(self)
        self.dir = w.path("postfix%d" % len(w.postfixes))
        self.conf = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "spool")
        self.log = os.path.join(self.dir, "maillog")
        self.addr = (POSTFIX_IP, SMTP_PORT)
        self.master_pid = None
        for d in (self.conf, self.queue, os.path.join(self.dir, "data")):
            os.makedirs(d, exist_ok=True)
        values = {"CONFIG_DIR": self.conf, "QUEUE_DIR": self.queue,
                  "DATA_DIR": os.path.join(self.dir, "data"),
                  "LOG_FILE": self.log, "LOG_DIR": self.dir, "LISTEN_IP": POSTFIX_IP,
                  "LISTEN": "%s:%d" % (POSTFIX_IP, SMTP_PORT),
                  "EXTRA": extra}
        for t in ("main.cf", "master.cf"):
            with open(os.path.join(self.conf, t), "w") as f:
                f.write(_fill(t + ".in", values))
        os.chown(os.path.join(self.dir, "data"),
                 *_ids("postfix"))
        self.resolv = os.path.join(self.dir, "resolv.conf")
        with open(self.resolv, "w") as f:
            f.write("nameserver %s\noptions attempts:2 timeout:2\n"
                    % w.dns.ip)
        self.start()

    def _postfix(self, *args, timeout=120):
        return subprocess.run(["postfix", "-c", self.conf] + list(args),
                              capture_output=True, timeout=timeout)

    def start(self):
        cmd = ("mount --bind %s /etc/resolv.conf && exec postfix -c %s start"
               % (self.resolv, self.conf))
        # `script` gives postfix a terminal: its fatal errors then go to
        # stderr, not only to syslog
        r = subprocess.run(["script", "-qec", "unshare -m sh -c '%s'" % cmd,
                            "/dev/null"], capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        pidf = os.path.join(self.queue, "pid", "master.pid")
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: %s%s"
                               % (r.stdout.decode(), r.stderr.decode()))
        world.wait_until(lambda: os.path.exists(pidf), timeout=30,
                         what="postfix master.pid")
        with open(pidf) as f:
            self.master_pid = int(f.read().strip())
        world.wait_until(self._listening, timeout=30, what="postfix smtpd")
        return self

    def _listening(self):
        import socket
        try:
            socket.create_connection(self.addr, timeout=1).close()
            return True
        except OSError:
            return False

    @property
    def pid(self):
        return self.master_pid

    def cpu(self):
        return proc_cpu(self.master_pid, tree=True)

    def mem(self):
        return proc_mem(self.master_pid, tree=True)

    def pids(self):
        if not self.master_pid:
            return []
        return [self.master_pid] + proc_children(self.master_pid)

    def kill9(self):
        for p in self.pids():
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.master_pid = None

    def stop(self):
        """Stop by PID: SIGTERM to master (it stops its children), then
        SIGKILL whatever of its process tree is left."""
        if not self.master_pid:
            return
        pids = self.pids()
        try:
            os.kill(self.master_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and \
                any(os.path.exists("/proc/%d" % p) and _alive(p)
                    for p in pids):
            time.sleep(0.1)
        for p in pids:
            try:
                if _alive(p):
                    os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.master_pid = None

    def release_hold(self):
        """postsuper -H ALL (held mail -> deferred queue), then postqueue -f
        so the queue manager takes it now, not at its next deferred-queue
        scan (queue_run_delay, 300 s)."""
        subprocess.run(["postsuper", "-c", self.conf, "-H", "ALL"],
                       capture_output=True, timeout=600)
        subprocess.run(["postqueue", "-c", self.conf, "-f"],
                       capture_output=True, timeout=600)

    def queue_files(self, queues=("incoming", "active", "deferred", "hold",
                                  "maildrop")):
        out = []
        for q in queues:
            for root, _, files in os.walk(os.path.join(self.queue, q)):
                out += [os.path.join(root, n) for n in files]
        return out

    def queued_senders(self):
        """Envelope senders of every queue file (the S record)."""
        out = []
        for path in self.queue_files():
            try:
                with open(path, "rb") as f:
                    data = f.read(8192)
            except OSError:
                continue
            # the envelope sender record comes before the content (whose
            # From: header is bench@src.test)
            m = re.search(rb"([A-Za-z0-9._+-]+@src\.test)", data)
            if m:
                out.append(m.group(1).decode())
        return out

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


def _alive(pid):
    try:
        st = _stat(pid)[0]
        return st != "Z"
    except OSError:
        return False


def _ids(user):
    import pwd
    p = pwd.getpwnam(user)
    return p.pw_uid, p.pw_gid
