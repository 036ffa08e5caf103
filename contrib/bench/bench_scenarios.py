"""bench_scenarios.py - the benchmark scenarios B1..B6 (contrib/bench/run).

Each scenario builds a fresh BenchWorld (dnsmasq + sinks) per engine run,
runs one engine on it, measures, and tears it down; the runner alternates
the engine order between repetitions. A scenario returns a dict:
  {"rows": [(figure, mxbatch, postfix, note)], "runs": [raw per-run dicts]}
where mxbatch/postfix are numbers (medians over the runs) or None.
"""
import json
import os
import random
import statistics
import subprocess
import threading
import time

import bench_env as E
import bench_inject as I

SCALE = 1.0          # --quick sets 0.1: smaller loads, same shapes
REPEAT = 3           # --repeat
B1_MESSAGES = 5000   # --b1-messages: smtp-source messages per B1 run
LOG = print


def n(x):
    return max(1, int(x * SCALE))


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    """(max-min)/median in percent: the noise figure of a set of runs."""
    xs = [x for x in xs if x is not None]
    if len(xs) < 2 or not statistics.median(xs):
        return None
    return 100.0 * (max(xs) - min(xs)) / statistics.median(xs)


def engine_order(rep):
    return ("mxbatch", "postfix") if rep % 2 == 0 else ("postfix", "mxbatch")


def start_engine(name, w, mx_sections=None, pf_extra=""):
    if name == "mxbatch":
        return E.Mxbatch(w, mx_sections)
    return E.Postfix(w, pf_extra)


# ------------------------------------------------------------ sink figures

class Sinks:
    """The recording sinks of one run and what they saw, by listen IP."""

    def __init__(self, w):
        self.w = w
        self.sinks = []
        self.host = {}  # ip -> MX host name

    def add(self, ips, config=None):
        for i in range(0, len(ips), 60):  # mxsink: up to 64 --listen
            self.sinks.append(self.w.sink(ips[i:i + 60], config=config))

    def txns(self, ips=None):
        out = []
        for s in self.sinks:
            for r in s.records():
                if r.get("type") == "transaction" and (
                        ips is None or r["listen"].rsplit(":", 1)[0] in ips):
                    out.append(r)
        return out

    def conns(self, ips=None):
        out = []
        for s in self.sinks:
            for r in s.records():
                if r.get("type") == "connect" and (
                        ips is None or r["listen"].rsplit(":", 1)[0] in ips):
                    out.append(r)
        return out

    def delivered(self, ips=None):
        """(recipients delivered, epoch ms of the last delivering MAIL)."""
        total, last = 0, 0
        for t in self.txns(ips):
            if t.get("status") == "delivered":
                total += t.get("accepted", 0)
                last = max(last, t.get("time_ms", 0))
        return total, last

    def wait(self, want, t0_epoch, timeout, ips=None):
        """Wait until `want` recipients arrived (at ips); seconds from
        t0_epoch to the last one, or None on timeout (figure missing)."""
        deadline = time.monotonic() + timeout
        while True:
            got, last = self.delivered(ips)
            if got >= want:
                return (last / 1000.0) - t0_epoch
            if time.monotonic() > deadline:
                LOG("    timeout: %d of %d recipients arrived" % (got, want))
                return None
            time.sleep(0.25)

    def per_ip(self, ips):
        """{ip: {"txns", "conns", "rcpts"}} of delivered transactions."""
        out = {ip: {"txns": 0, "conns": 0, "rcpts": 0} for ip in ips}
        for t in self.txns(set(ips)):
            if t.get("status") == "delivered":
                ip = t["listen"].rsplit(":", 1)[0]
                out[ip]["txns"] += 1
                out[ip]["rcpts"] += t.get("accepted", 0)
        for c in self.conns(set(ips)):
            out[c["listen"].rsplit(":", 1)[0]]["conns"] += 1
        return out


def run_info(eng, cpu0, t_wall, w):
    return {"engine": eng.name, "cpu_s": eng.cpu() - cpu0,
            "wall_s": t_wall, "loadavg": E.loadavg()}


# --------------------------------------------------------------------- B1

def smtp_source(addr, msgs, rcpts, sessions=20, size=4096, timeout=900,
                to="rcpt@b1.test"):
    """Postfix's smtp-source: `msgs` messages of `size` bytes, `rcpts`
    recipients each, over `sessions` reused connections; seconds."""
    argv = ["smtp-source", "-s", str(sessions), "-l", str(size), "-m",
            str(msgs), "-r", str(rcpts), "-d", "-N", "-f", "bench@src.test",
            "-t", to, "-M", "inject.bench.test",
            "%s:%d" % addr]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, timeout=timeout)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError("smtp-source failed: %s" % r.stderr.decode()[-500:])
    return dt


PF_HOLD = ("# B1: accepted mail goes to the hold queue (nothing delivered),\n"
           "# and smtpd does not wait for queue-manager tokens\n"
           "smtpd_end_of_data_restrictions = check_client_access static:HOLD\n"
           "in_flow_delay = 0s\n")


def b1_one(engine, rcpts, msgs, lat_secs):
    w = E.BenchWorld()
    try:
        w.dns.start()
        eng = start_engine(engine, w, {"delivery": {"paused": "yes"}},
                           PF_HOLD)
        time.sleep(0.5)
        cpu0 = eng.cpu()
        la0 = E.loadavg()
        dt = smtp_source(eng.addr, msgs, rcpts)
        cpu = eng.cpu() - cpu0
        rss = eng.mem()[0]
        # latency + crash check: a closed-loop injector, kill -9 mid-load
        body = I.body(4096, "b1")
        tag = "b1r%d" % rcpts
        lat_msgs = (("%s-%d@src.test" % (tag, i),
                     ["u%d-%d@b1.test" % (i, j) for j in range(rcpts)], body)
                    for i in range(10**7))
        box = {}
        th = threading.Thread(target=lambda: box.setdefault(
            "r", I.inject(eng.addr, lat_msgs, sessions=20, timeout=10)))
        th.start()
        time.sleep(lat_secs)
        eng.kill9()
        th.join(60)
        res = box.get("r")
        acked = set(res.acked) if res else set()
        queued = set(s for s in eng.queued_senders() if s.startswith(tag))
        lost = len(acked - queued)
        out = {"engine": engine, "rcpts": rcpts, "msgs": msgs,
               "seconds": dt, "msgs_per_s": msgs / dt,
               "cpu_us_per_msg": 1e6 * cpu / msgs, "rss": rss,
               "lat_p50_ms": 1e3 * res.pct(50) if res else None,
               "lat_p99_ms": 1e3 * res.pct(99) if res else None,
               "lat_msgs_per_s": res.rate() if res else None,
               "acked_before_kill": len(acked), "queued_after_kill":
               len(queued), "lost_after_kill": lost,
               "loadavg": la0}
        LOG("    %-7s %2d rcpt: %8.0f msg/s  p50 %s ms  p99 %s ms  "
            "cpu %5.0f us/msg  kill -9: %d acked, %d lost  (load %.2f)"
            % (engine, rcpts, out["msgs_per_s"], _f(out["lat_p50_ms"]),
               _f(out["lat_p99_ms"]), out["cpu_us_per_msg"], len(acked),
               lost, la0[0]))
        return out
    finally:
        w.close()


def _f(x, fmt="%.1f"):
    return "-" if x is None else fmt % x


def b1():
    runs = []
    msgs = n(B1_MESSAGES)
    for rcpts in (1, 10):
        for rep in range(REPEAT):
            for eng in engine_order(rep):
                runs.append(b1_one(eng, rcpts, msgs, lat_secs=4))
    rows = []
    for rcpts in (1, 10):
        def pick(eng, key):
            return [r[key] for r in runs
                    if r["engine"] == eng and r["rcpts"] == rcpts]
        for key, label in (("msgs_per_s", "accepted msgs/s"),
                           ("lat_p50_ms", "p50 end-of-data->250 ms"),
                           ("lat_p99_ms", "p99 end-of-data->250 ms"),
                           ("cpu_us_per_msg", "CPU-us per accepted msg"),
                           ("lost_after_kill", "acked msgs lost by kill -9")):
            rows.append(("B1 %d rcpt: %s" % (rcpts, label),
                         median(pick("mxbatch", key)),
                         median(pick("postfix", key)),
                         "spread %s%% / %s%%" % (
                             _f(spread(pick("mxbatch", key)), "%.0f"),
                             _f(spread(pick("postfix", key)), "%.0f"))))
    return {"rows": rows, "runs": runs}


# --------------------------------------------------------------------- B2

def b2_topology(w):
    """200 domains on one MX pair + 300 domains with their own MX."""
    sk = Sinks(w)
    shared = ["127.0.2.1", "127.0.2.2"]
    for i, ip in enumerate(shared):
        w.dns.add_a("mx%d.shared.test" % (i + 1), ip)
        sk.host[ip] = "mx%d.shared.test" % (i + 1)
    sdoms = ["s%03d.test" % i for i in range(200)]
    for d in sdoms:
        w.dns.add_mx(d, [(10, "mx1.shared.test"), (10, "mx2.shared.test")])
    odoms, oips = [], []
    for i in range(300):
        d = "o%03d.test" % i
        ip = "127.0.%d.%d" % (3 + i // 250, 1 + i % 250)
        w.dns.add_mx(d, [(10, "mx.%s" % d)])
        w.dns.add_a("mx.%s" % d, ip)
        sk.host[ip] = "mx.%s" % d
        odoms.append(d)
        oips.append(ip)
    w.dns.start()
    sk.add(shared)
    sk.add(oips)
    return sk, shared, oips, sdoms, odoms


def b2_messages(sdoms, odoms, msgs=1000, per=50, seed=2):
    rnd = random.Random(seed)
    doms = sdoms + odoms
    body = I.body(4096, "b2")
    out = []
    for m in range(msgs):
        out.append(("b2-%d@src.test" % m,
                    ["u%dr%d@%s" % (m, i, rnd.choice(doms))
                     for i in range(per)], body))
    return out


def b2_one(engine, mode):
    w = E.BenchWorld()
    try:
        sk, shared, oips, sdoms, odoms = b2_topology(w)
        msgs = b2_messages(sdoms, odoms, msgs=n(1000))
        want = sum(len(m[1]) for m in msgs)
        mx = {'site "mx*.shared.test"': {"multi_domain": mode}}
        eng = start_engine(engine, w, mx)
        dns0 = w.dns.log_size()
        cpu0 = eng.cpu()
        la0 = E.loadavg()
        t0 = time.time()
        res = I.inject(eng.addr, msgs, sessions=20)
        t_all = sk.wait(want, t0, timeout=600)
        cpu = eng.cpu() - cpu0
        q = w.dns.queries_since(dns0)
        alld = set(sdoms + odoms)
        mxq = sum(1 for t, name in q if t == "MX" and name in alld)
        pi = sk.per_ip(shared + oips)
        own = [pi[ip] for ip in oips]
        out = {"engine": engine, "mode": mode, "recipients": want,
               "injected_s": res.seconds, "acked": len(res.acked),
               "all_delivered_s": t_all, "cpu_s": cpu,
               "cpu_us_per_rcpt": 1e6 * cpu / want,
               "shared": {sk.host[ip]: pi[ip] for ip in shared},
               "shared_txns": sum(pi[ip]["txns"] for ip in shared),
               "shared_conns": sum(pi[ip]["conns"] for ip in shared),
               "shared_rcpts_per_txn": _div(
                   sum(pi[ip]["rcpts"] for ip in shared),
                   sum(pi[ip]["txns"] for ip in shared)),
               "own_txns": sum(o["txns"] for o in own),
               "own_conns": sum(o["conns"] for o in own),
               "own_rcpts_per_txn": _div(sum(o["rcpts"] for o in own),
                                         sum(o["txns"] for o in own)),
               "dns_mx_per_domain": mxq / len(alld),
               "dns_queries_total": len(q), "loadavg": la0}
        LOG("    %-7s %-5s all %ss  shared: %d txns %d conns %.1f rcpt/txn"
            "  own: %d txns %d conns  MX q/domain %.2f  (load %.2f)"
            % (engine, mode, _f(t_all), out["shared_txns"],
               out["shared_conns"], out["shared_rcpts_per_txn"] or 0,
               out["own_txns"], out["own_conns"],
               out["dns_mx_per_domain"], la0[0]))
        return out
    finally:
        w.close()


def _div(a, b):
    return a / b if b else None


def b2():
    runs = []
    reps = max(1, REPEAT // 2)
    for rep in range(reps):
        for eng in engine_order(rep):
            if eng == "postfix":  # Postfix has no such switch: one run
                runs.append(b2_one("postfix", "-"))
            else:
                for mode in ("allow", "deny"):
                    runs.append(b2_one("mxbatch", mode))
    rows = []

    def med(eng, mode, key):
        return median([r[key] for r in runs if r["engine"] == eng and
                       (mode is None or r["mode"] == mode)])
    for mode in ("allow", "deny"):
        for key, label in (("shared_txns", "transactions at shared pair"),
                           ("shared_conns", "connections at shared pair"),
                           ("shared_rcpts_per_txn", "rcpts/txn at shared"),
                           ("own_txns", "transactions at 300 own MXs"),
                           ("own_conns", "connections at 300 own MXs"),
                           ("all_delivered_s", "s until all delivered"),
                           ("dns_mx_per_domain", "MX queries per domain"),
                           ("cpu_us_per_rcpt", "CPU-us per recipient")):
            rows.append(("B2 %s: %s" % (mode, label),
                         med("mxbatch", mode, key), med("postfix", "-", key),
                         ""))
    return {"rows": rows, "runs": runs}


# --------------------------------------------------------------------- B3

def b3_one(engine, domains):
    w = E.BenchWorld()
    try:
        sk = Sinks(w)
        ips = ["127.0.6.%d" % (i + 1) for i in range(5)]
        for i, ip in enumerate(ips):
            w.dns.add_a("mx%d.b3.test" % (i + 1), ip)
            sk.host[ip] = "mx%d.b3.test" % (i + 1)
        doms = ["d%05d.b3.test" % i for i in range(domains)]
        for i, d in enumerate(doms):
            w.dns.add_mx(d, [(10, "mx%d.b3.test" % (i % 5 + 1))])
        w.dns.start()
        sk.add(ips)
        body = I.body(4096, "b3")
        msgs = [("b3-%d@src.test" % i, ["u%d@%s" % (i, d)], body)
                for i, d in enumerate(doms)]
        eng = start_engine(engine, w)
        dns0 = w.dns.log_size()
        cpu0 = eng.cpu()
        la0 = E.loadavg()
        t0 = time.time()
        res = I.inject(eng.addr, msgs, sessions=20)
        t_all = sk.wait(len(msgs), t0, timeout=600)
        cpu = eng.cpu() - cpu0
        q = w.dns.queries_since(dns0)
        dset = set(doms)
        mxq = sum(1 for t, nm in q if t == "MX" and nm in dset)
        aq = sum(1 for t, nm in q if t == "A" and nm.endswith(".b3.test")
                 and nm.startswith("mx"))
        conns = len(sk.conns())
        peak = sum(s.max_concurrent() for s in sk.sinks)
        out = {"engine": engine, "messages": len(msgs),
               "injected_s": res.seconds, "all_delivered_s": t_all,
               "msgs_per_s": len(msgs) / t_all if t_all else None,
               "connections": conns,
               "conns_per_1000_msgs": 1000.0 * conns / len(msgs),
               "peak_concurrent_conns": peak,
               "dns_mx_per_domain": mxq / len(doms),
               "dns_a_queries_mx_names": aq,
               "cpu_us_per_msg": 1e6 * cpu / len(msgs), "loadavg": la0}
        LOG("    %-7s all %ss (%s msg/s)  %d conns (%.1f/1000 msgs, peak %d)"
            "  MX q/domain %.2f  A q %d  (load %.2f)"
            % (engine, _f(t_all), _f(out["msgs_per_s"], "%.0f"), conns,
               out["conns_per_1000_msgs"], peak, out["dns_mx_per_domain"],
               aq, la0[0]))
        return out
    finally:
        w.close()


def b3():
    runs = []
    for rep in range(max(1, REPEAT // 2)):
        for eng in engine_order(rep):
            runs.append(b3_one(eng, n(10000)))
    rows = []
    for key, label in (("msgs_per_s", "delivered msgs/s"),
                       ("all_delivered_s", "s until all delivered"),
                       ("conns_per_1000_msgs", "connections per 1000 msgs"),
                       ("peak_concurrent_conns", "peak concurrent conns"),
                       ("dns_mx_per_domain", "MX queries per domain"),
                       ("dns_a_queries_mx_names", "A queries (5 MX names)"),
                       ("cpu_us_per_msg", "CPU-us per message")):
        rows.append(("B3: %s" % label,
                     median([r[key] for r in runs
                             if r["engine"] == "mxbatch"]),
                     median([r[key] for r in runs
                             if r["engine"] == "postfix"]), ""))
    return {"rows": rows, "runs": runs}


# --------------------------------------------------------------------- B5

def release(eng):
    """Start delivering what was queued with delivery paused; the epoch
    time delivery could start. mxbatchd has no run-time switch: it is
    restarted with paused = no, and the clock starts once it is up (its
    start-up, mostly the spool open, is B4's figure, not this one's)."""
    if eng.name == "mxbatch":
        eng.stop()
        eng.daemon.sections["delivery"]["paused"] = "no"
        eng.start()
        return time.time()
    t0 = time.time()
    eng.release_hold()
    return t0


def b5_one(engine, failing):
    w = E.BenchWorld()
    try:
        sk = Sinks(w)
        hips = ["127.0.7.%d" % (i + 1) for i in range(10)]
        fips = ["127.0.7.%d" % (i + 11) for i in range(10)]
        hdoms = ["h%02d.b5.test" % i for i in range(10)]
        fdoms = ["f%02d.b5.test" % i for i in range(10)]
        for d, ip in zip(hdoms + fdoms, hips + fips):
            w.dns.add_mx(d, [(10, "mx.%s" % d)])
            w.dns.add_a("mx.%s" % d, ip)
        w.dns.start()
        cfg = {}
        if failing:
            cfg = {"listen": {ip: {"replies": {
                "mail": "451 4.3.0 Temporary failure, try again later",
                "rcpt": "451 4.3.0 Temporary failure, try again later"}}
                for ip in fips}}
        sk.add(hips + fips, cfg)
        rnd = random.Random(5)
        body = I.body(4096, "b5")
        msgs = [("b5-%d@src.test" % m,
                 ["u%dr%d@%s" % (m, i, d) for i, d in
                  enumerate(rnd.sample(hdoms + fdoms, 10))], body)
                for m in range(n(2000))]
        want = sum(1 for m in msgs for r in m[1]
                   if r.split("@")[1] in hdoms)
        # queue everything first, then deliver: the figure is delivery
        # alone, not bounded by how fast the injector submits
        eng = start_engine(engine, w, {"delivery": {"paused": "yes"}},
                           PF_HOLD)
        la0 = E.loadavg()
        I.inject(eng.addr, msgs, sessions=20)
        t0 = release(eng)
        cpu0 = eng.cpu()
        t = sk.wait(want, t0, timeout=600, ips=set(hips))
        fail = sk.per_ip(fips)
        out = {"engine": engine, "failing": failing, "healthy_rcpts": want,
               "healthy_done_s": t,
               "failing_sites_conns": sum(x["conns"] for x in fail.values()),
               "failing_sites_mail_cmds": len(sk.txns(set(fips))),
               "healthy_rcpts_per_s": want / t if t else None,
               "cpu_s": eng.cpu() - cpu0, "loadavg": la0}
        LOG("    %-7s %-8s healthy %d rcpts in %ss = %s rcpt/s  (load %.2f)"
            % (engine, "4xx-half" if failing else "clean", want, _f(t),
               _f(out["healthy_rcpts_per_s"], "%.0f"), la0[0]))
        return out
    finally:
        w.close()


def b5():
    runs = []
    for rep in range(max(1, REPEAT // 2)):
        for eng in engine_order(rep):
            for failing in (False, True):
                runs.append(b5_one(eng, failing))
    rows = []
    ratio = {}
    for eng in ("mxbatch", "postfix"):
        c = median([r["healthy_rcpts_per_s"] for r in runs
                    if r["engine"] == eng and not r["failing"]])
        f = median([r["healthy_rcpts_per_s"] for r in runs
                    if r["engine"] == eng and r["failing"]])
        ratio[eng] = (c, f, 100.0 * f / c if c and f else None)
    rows.append(("B5: healthy rcpts/s, clean run", ratio["mxbatch"][0],
                 ratio["postfix"][0], ""))
    rows.append(("B5: healthy rcpts/s, half sites 4xx", ratio["mxbatch"][1],
                 ratio["postfix"][1], ""))
    rows.append(("B5: 4xx-half / clean, %", ratio["mxbatch"][2],
                 ratio["postfix"][2], "goal mxbatch >= 90"))
    return {"rows": rows, "runs": runs}


# --------------------------------------------------------------------- B6

def b6_one(engine, msgs_n):
    """Queue msgs_n x 10 recipients with delivery paused, then deliver
    them; CPU per accepted message, per delivered recipient, RAM."""
    w = E.BenchWorld()
    try:
        sk = Sinks(w)
        ips = ["127.0.8.%d" % (i + 1) for i in range(20)]
        doms = ["e%02d.b6.test" % i for i in range(20)]
        for d, ip in zip(doms, ips):
            w.dns.add_mx(d, [(10, "mx.%s" % d)])
            w.dns.add_a("mx.%s" % d, ip)
        w.dns.start()
        sk.add(ips)
        body = I.body(4096, "b6")
        msgs = [("b6-%d@src.test" % m,
                 ["u%dr%d@%s" % (m, i, doms[m % 20]) for i in range(10)],
                 body) for m in range(msgs_n)]
        want = 10 * msgs_n
        eng = start_engine(engine, w, {"delivery": {"paused": "yes"}},
                           PF_HOLD)
        time.sleep(1)
        rss0 = eng.mem()[2]
        cpu0 = eng.cpu()
        la0 = E.loadavg()
        I.inject(eng.addr, msgs, sessions=20)
        cpu_acc = eng.cpu() - cpu0
        time.sleep(2)
        rss1 = eng.mem()[2]
        t0 = time.time()
        if engine == "mxbatch":
            eng.stop()
            eng.daemon.sections["delivery"]["paused"] = "no"
            eng.start()
            cpu1 = 0.0  # a new process: all its CPU is delivery
        else:
            cpu1 = eng.cpu()
            eng.release_hold()
        t = sk.wait(want, t0, timeout=600)
        time.sleep(1)  # the last outcomes written
        cpu_del = eng.cpu() - cpu1
        out = {"engine": engine, "msgs": msgs_n, "rcpts": want,
               "cpu_us_per_accepted_msg": 1e6 * cpu_acc / msgs_n,
               "cpu_us_per_delivered_rcpt": 1e6 * cpu_del / want,
               "delivery_s": t,
               "pss_idle": rss0, "pss_queued": rss1,
               "ram_bytes_per_queued_rcpt": (rss1 - rss0) / want,
               "loadavg": la0}
        LOG("    %-7s %.0f us/accepted msg  %.1f us/delivered rcpt  "
            "PSS %d -> %d (%.0f B/queued rcpt)  delivery %ss  (load %.2f)"
            % (engine, out["cpu_us_per_accepted_msg"],
               out["cpu_us_per_delivered_rcpt"], rss0, rss1,
               out["ram_bytes_per_queued_rcpt"], _f(t), la0[0]))
        return out
    finally:
        w.close()


def b6():
    runs = []
    for rep in range(max(1, REPEAT // 2)):
        for eng in engine_order(rep):
            runs.append(b6_one(eng, n(5000)))
    rows = []
    for key, label in (("cpu_us_per_accepted_msg",
                        "CPU-us per accepted msg (10 rcpts)"),
                       ("cpu_us_per_delivered_rcpt",
                        "CPU-us per delivered rcpt"),
                       ("ram_bytes_per_queued_rcpt",
                        "RAM bytes per queued rcpt")):
        rows.append(("B6: %s" % label,
                     median([r[key] for r in runs
                             if r["engine"] == "mxbatch"]),
                     median([r[key] for r in runs
                             if r["engine"] == "postfix"]),
                     "PSS, summed over Postfix's processes"
                     if "RAM" in label else ""))
    return {"rows": rows, "runs": runs}


# --------------------------------------------------------------------- B4

B4_BUDGET = 900      # --b4-budget: seconds the fill may take at most
B4_SESSIONS = 100    # smtp-source sessions for the fill (throughput only)


def b4_fill(eng, msgs_n):
    """Queue msgs_n x 10 recipients in chunks of 50,000 messages, stopping
    early when the time budget is spent; (messages queued, seconds)."""
    done, t0 = 0, time.monotonic()
    while done < msgs_n and time.monotonic() - t0 < B4_BUDGET:
        k = min(50000, msgs_n - done)
        smtp_source(eng.addr, k, 10, sessions=B4_SESSIONS, timeout=3600,
                    to="rcpt@b4.test")
        done += k
        LOG("    ... %d messages queued, %.0f s" % (done,
                                                     time.monotonic() - t0))
    return done, time.monotonic() - t0


def b4(msgs_n=None):
    """mxbatch only: msgs_n x 10 recipients queued with delivery paused."""
    msgs_n = msgs_n or n(1000000)
    w = E.BenchWorld()
    try:
        sk = Sinks(w)
        w.dns.add_mx("b4.test", [(10, "mx.b4.test")])
        w.dns.add_a("mx.b4.test", "127.0.9.1")
        w.dns.start()
        sk.add(["127.0.9.1"])
        eng = E.Mxbatch(w, {"delivery": {"paused": "yes"}})
        la0 = E.loadavg()
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], eng.mem()[1])
                except OSError:
                    pass
                stop.wait(1)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        cpu0 = eng.cpu()
        msgs_n, dt = b4_fill(eng, msgs_n)
        cpu = eng.cpu() - cpu0
        time.sleep(10)
        rss_steady, hwm = eng.mem()[:2]
        stop.set()
        th.join()
        spool = E.du_bytes(eng.spool)
        lat = []
        for _ in range(5):
            t = time.monotonic()
            try:
                st, _ = eng.daemon.admin("GET", "/v1/queue", timeout=120)
            except OSError as e:  # no admin API in this build
                st = "n/a (%s)" % e.__class__.__name__
            lat.append((time.monotonic() - t, st))
        api_ms = median([1e3 * x for x, st in lat if st == 200])
        t = time.monotonic()
        eng.stop()
        shutdown_s = time.monotonic() - t
        eng.daemon.sections["delivery"]["paused"] = "no"
        log0 = len(eng.daemon.log_text())
        t0 = time.time()
        eng.start()
        started_s = time.time() - t0
        sk.wait(1, t0, timeout=600)
        first = sk.delivered()[1] / 1000.0 - t0 if sk.delivered()[0] else None
        phases = restart_phases(eng.daemon.log_text()[log0:], t0)
        rss_restart = eng.mem()
        out = {"engine": "mxbatch", "msgs": msgs_n, "rcpts": 10 * msgs_n,
               "inject_s": dt, "inject_msgs_per_s": msgs_n / dt,
               "cpu_us_per_accepted_msg": 1e6 * cpu / msgs_n,
               "peak_rss": max(peak[0], hwm), "steady_rss": rss_steady,
               "ram_bytes_per_queued_rcpt": rss_steady / (10.0 * msgs_n),
               "spool_bytes": spool, "admin_queue_ms": api_ms,
               "admin_status": [st for _, st in lat],
               "shutdown_s": shutdown_s, "restart_ready_s": started_s,
               "restart_first_delivery_s": first,
               "rss_after_restart": rss_restart[0],
               "restart_phases_s": phases, "loadavg": la0}
        LOG("    mxbatch %d msgs x 10: %.0f msg/s  peak RSS %.0f MiB  "
            "steady %.0f MiB  spool %.2f GiB  GET /v1/queue %s ms  "
            "restart->first delivery %ss %s" % (
                msgs_n, out["inject_msgs_per_s"], out["peak_rss"] / 2**20,
                rss_steady / 2**20, spool / 2**30, _f(api_ms), _f(first),
                phases))
        rows = [("B4: queue %d msgs x 10 rcpts, msgs/s" % msgs_n,
                 out["inject_msgs_per_s"], None, ""),
                ("B4: peak RSS MiB", out["peak_rss"] / 2**20, None,
                 "goal <= 1024"),
                ("B4: steady RSS MiB", rss_steady / 2**20, None, ""),
                ("B4: spool GiB", spool / 2**30, None, ""),
                ("B4: GET /v1/queue ms", api_ms, None,
                 "HTTP %s" % out["admin_status"][0]),
                ("B4: restart to first delivery s", first, None,
                 "goal <= 10"),
                ("B4: RSS after restart MiB", rss_restart[0] / 2**20, None,
                 "")]
        return {"rows": rows, "runs": [out]}
    finally:
        w.close()


def restart_phases(log, t0):
    """Seconds from t0 (restart) to the first daemon log line of each
    start-up phase: where restart-to-first-delivery goes."""
    import datetime
    out = {}
    for key, needle in (("spool_open", "spool open"),
                        ("started", "mxbatchd started"),
                        ("first_site", "new site"),
                        ("first_connect", "connected to")):
        for line in log.splitlines():
            if needle in line:
                ts = datetime.datetime.strptime(
                    line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
                out[key] = round(ts - t0, 3)
                break
    return out


def helper(argv, timeout=1800):
    """Run another helper's benchmark of contrib/bench/ as it is (its own
    setup and output), keep its output in the JSON."""
    build = os.environ["MXB_BUILD_DIR"]
    argv = [a.replace("@BUILD@", build) for a in argv]
    LOG("    $ %s" % " ".join(argv))
    la0 = E.loadavg()
    t = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       cwd=E.SOURCE_DIR)
    LOG("\n".join("    | " + x for x in (r.stdout + r.stderr).splitlines()))
    return {"rows": [("%s: exit %d (output above and in JSON)"
                      % (os.path.basename(argv[0]) if "/" in argv[0]
                         else argv[1].split("/")[-1], r.returncode),
                      None, None, "")],
            "runs": [{"argv": argv, "exit": r.returncode,
                      "seconds": time.monotonic() - t, "loadavg": la0,
                      "output": r.stdout + r.stderr}]}


def smtpc():
    """Issue 5's figure: the SMTP client alone, recipients/s to one sink."""
    return helper([os.path.join(E.HERE, "smtpc_bench.py"), "--build-dir",
                   "@BUILD@", "--repeat", str(REPEAT)])


def smtpd():
    """Issue 4's figure as its helper measures it (smtpd_bench.sh)."""
    return helper(["sh", os.path.join(E.HERE, "smtpd_bench.sh"), "@BUILD@"])


def queue():
    """The store alone (queue_bench.sh; needs the queue_bench target)."""
    return helper(["sh", os.path.join(E.HERE, "queue_bench.sh"), "@BUILD@"])


SCENARIOS = {"B1": b1, "B2": b2, "B3": b3, "B4": b4, "B5": b5, "B6": b6,
             "SMTPC": smtpc, "SMTPD": smtpd, "QUEUE": queue}
DESCRIPTIONS = {
    "B1": "durable acceptance: smtp-source 20 sessions, 4 KiB, 1 and 10 "
          "rcpts; latency; kill -9",
    "B2": "fan-out: 1,000 msgs x 50 rcpts, 200 domains on one MX pair "
          "(allow/deny) + 300 own-MX domains",
    "B3": "many domains: 10,000 msgs over 10,000 domains on 5 MX names",
    "B4": "scale (mxbatch only): 1,000,000 msgs x 10 rcpts queued paused; "
          "RSS, spool, restart",
    "B5": "deferral isolation: half the sites 4xx, healthy rcpts/s vs "
          "a clean run",
    "B6": "efficiency: CPU-us per accepted msg / delivered rcpt, RAM per "
          "queued rcpt",
    "SMTPC": "the SMTP client alone (issue 5): smtpc_bench.py, "
             "recipients/s over 1 and 20 connections",
    "SMTPD": "submission alone (issue 4) as smtpd_bench.sh measures it",
    "QUEUE": "the store alone: queue_bench.sh",
}


def dump(path, results, meta):
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1,
                  default=str)
