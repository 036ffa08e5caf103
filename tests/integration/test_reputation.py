"""Reputation: source-address pools, the DNSBL monitor, reply-driven blocks
and adaptive (AIMD) throttles, seen from the receiving MXs.

Real daemon, real dnsmasq serving fake block-list zones, test MX sinks that
record the source address (`peer`) of every connection. mxbatchd sends from
127.0.0.2 / 127.0.0.3 (pool addresses bound per connection).
"""
import os
import re
import socketserver
import threading
import unittest

import world
from submit import submit

FAST = {"retry_schedule": "1s", "site_backoff": "1s", "site_backoff_max": "2s"}
A1, A2 = "127.0.0.2", "127.0.0.3"
POOL = {'pool "default"': {"addresses": "%s=out1.test, %s=out2.test" % (A1, A2)}}


def merge(*dicts):
    out = {}
    for d in dicts:
        for sect, keys in d.items():
            out.setdefault(sect, {}).update(keys)
    return out


def reversed_name(ip, zone):
    return ".".join(reversed(ip.split("."))) + "." + zone


class PeerSink:
    """A tiny SMTP server answering RCPT by the client's source address:
    peers in `block` get a block-list refusal; others are delivered.
    (mxsink's per-listen-address overrides cannot tell peers apart.)"""

    REFUSAL = "550 5.7.1 Service unavailable; client [%s] listed at zen.spamhaus.org"

    def __init__(self, testcase, ip, port, block):
        self.block = set(block)
        self.delivered = []       # (peer, [rcpts])
        self.refused = []         # peers refused
        self.lock = threading.Lock()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                sink.session(self.rfile, self.wfile, self.client_address[0])

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer((ip, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()
        testcase.addCleanup(self.close)

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def session(self, rf, wf, peer):
        def say(line):
            wf.write((line + "\r\n").encode())
            wf.flush()
        say("220 peer.test ESMTP")
        rcpts = []
        while True:
            line = rf.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").strip()
            verb = cmd[:4].upper()
            if verb in ("EHLO", "HELO"):
                say("250 peer.test")
            elif verb == "MAIL":
                rcpts = []
                say("250 2.1.0 ok")
            elif verb == "RCPT":
                if peer in self.block:
                    with self.lock:
                        self.refused.append(peer)
                    say(self.REFUSAL % peer)
                else:
                    rcpts.append(cmd.split(":", 1)[1].strip().strip("<>"))
                    say("250 2.1.5 ok")
            elif verb == "DATA":
                if not rcpts:
                    say("554 5.5.1 no valid recipients")
                    continue
                say("354 go ahead")
                while rf.readline() not in (b".\r\n", b".\n", b""):
                    pass
                with self.lock:
                    self.delivered.append((peer, rcpts))
                rcpts = []
                say("250 2.0.0 queued")
            elif verb == "RSET":
                rcpts = []
                say("250 2.0.0 ok")
            elif verb == "QUIT":
                say("221 2.0.0 bye")
                return
            else:
                say("250 2.0.0 ok" if verb == "NOOP" else "502 5.5.2 what")

    def peers_of(self, rcpt):
        with self.lock:
            return [p for p, rs in self.delivered if rcpt in rs]


class ReputationTest(unittest.TestCase):
    def setUp(self):
        self.w = world.World(self)

    def daemon(self, *sections):
        return self.w.daemon(merge({"delivery": dict(FAST),
                                    "dns": {"error_ttl": "500ms",
                                            "negative_ttl": "1s"}},
                                   POOL, *sections))

    @staticmethod
    def admin_up(d):
        """The admin API runs (daemon.c starts it once wired)."""
        return os.path.exists(d.token_file)

    @staticmethod
    def log_has(d, *needles):
        return [line for line in d.log_text().splitlines()
                if all(n in line for n in needles)]

    def site_json(self, d, mx):
        st, res = d.admin("GET", "/v1/sites")
        self.assertEqual(st, 200, res)
        for s in res["sites"]:
            if any(m["host"] == mx for m in s["mx"]):
                return s
        return None

    def source(self, site, ip):
        return [s for s in site["sources"] if s["address"] == ip][0]

    def metrics(self, d):
        st, text = d.admin("GET", "/metrics")
        self.assertEqual(st, 200)
        out = {}
        for line in text.splitlines():
            if line.startswith("mxbatch_sched_reputation_"):
                k, v = line.split()[:2]
                k = k[len("mxbatch_sched_reputation_"):]
                out[k[:-len("_total")] if k.endswith("_total") else k] = float(v)
        return out

    def deliver(self, d, sink, rcpt, timeout=20):
        """Submit one message to rcpt; the source address it arrived from."""
        self.assertEqual(submit(d.routing_socket, "s@src.test", [rcpt]), {})
        t = world.wait_until(lambda: [t for t in sink.transactions(status="delivered")
                                      if rcpt in [r["to"] for r in t["rcpts"]]],
                             timeout=timeout, what="%s delivered" % rcpt)
        conn = t[0]["conn"]
        peers = [r["peer"] for r in sink.records()
                 if r.get("type") == "connect" and r.get("conn") == conn]
        return peers[0]

    def no_bounces(self, d):
        bad = [r for r in d.delivery_records()
               if r["event"] in ("Bounce", "Expiration")]
        self.assertEqual(bad, [])

    # ---------------------------------------------------------------- DNSBL
    def test_dnsbl_listing_moves_site_and_delisting_releases(self):
        dns = self.w.dns
        dns.add_mx("dest.test", [(10, "mx.dest.test")])
        dns.add_a("mx.dest.test", "127.0.1.40")
        dns.start()
        sink = self.w.sink("127.0.1.40")
        d = self.daemon({"blocklists": {"zones": "zen.test", "interval": "1s"}})
        first = self.deliver(d, sink, "a1@dest.test")
        self.assertIn(first, (A1, A2))
        other = A2 if first == A1 else A1
        # the zone lists the address in use
        dns.add_a(reversed_name(first, "zen.test"), "127.0.0.2")
        dns.add_txt(reversed_name(first, "zen.test"), "listed for a test")
        dns.reload()
        world.wait_until(lambda: self.log_has(
            d, "[%s] listed at zen.test (127.0.0.2): listed for a test" % first),
            timeout=8, what="the listing seen")
        world.wait_until(lambda: self.log_has(d, "source address now %s" % other),
                         timeout=5, what="the site moved")
        self.assertEqual(self.deliver(d, sink, "a2@dest.test"), other)
        self.assertEqual(self.deliver(d, sink, "a3@dest.test"), other)
        if self.admin_up(d):
            site = self.site_json(d, "mx.dest.test")
            self.assertTrue(self.source(site, first)["listed"])
            self.assertTrue(self.source(site, first)["suspended_everywhere"])
            self.assertEqual(site["source_address"], other)
            self.assertGreaterEqual(self.metrics(d).get("listings", 0), 1)
        st, bl = d.admin("GET", "/v1/blocklists") if self.admin_up(d) else (0, None)
        if st == 200:  # once the admin API routes it
            a = [x for x in bl["addresses"] if x["address"] == first][0]
            self.assertTrue(a["listed"])
            self.assertEqual(a["zones"][0]["state"], "listed")
            self.assertEqual(a["zones"][0]["reason"], "listed for a test")
            self.assertIsNotNone(a["zones"][0]["first_seen_ms"])
        # delisting releases it: the site goes back to its own address
        dns.remove(reversed_name(first, "zen.test"))
        dns.reload()
        world.wait_until(lambda: self.log_has(d, "[%s] delisted everywhere" % first),
                         timeout=8, what="the delisting seen")
        self.assertEqual(self.deliver(d, sink, "a4@dest.test"), first)
        if self.admin_up(d):
            self.assertGreaterEqual(self.metrics(d).get("delistings", 0), 1)
        self.no_bounces(d)
        # each connection introduced itself with its address's EHLO name
        self.assertEqual(d.stop(), 0)
        conns = sink.connections()
        self.assertEqual({(c["peer"], c["helo"]) for c in conns},
                         {(A1, "out1.test"), (A2, "out2.test")})

    def test_refusal_code_is_a_monitor_problem_not_a_listing(self):
        dns = self.w.dns
        dns.add_mx("dest.test", [(10, "mx.dest.test")])
        dns.add_a("mx.dest.test", "127.0.1.41")
        for ip in (A1, A2):
            dns.add_a(reversed_name(ip, "zen.test"), "127.255.255.254")
        dns.start()
        sink = self.w.sink("127.0.1.41")
        d = self.daemon({"blocklists": {"zones": "zen.test", "interval": "1s"}})
        for ip in (A1, A2):
            world.wait_until(lambda: self.log_has(
                d, "[%s] block list zen.test refuses our queries (127.255.255.254)"
                   ": monitor misconfigured" % ip),
                timeout=8, what="%s reported as a monitor problem" % ip)
        first = self.deliver(d, sink, "b1@dest.test")
        self.assertEqual(self.deliver(d, sink, "b2@dest.test"), first)
        if self.admin_up(d):
            site = self.site_json(d, "mx.dest.test")
            for s in site["sources"]:
                self.assertFalse(s["listed"])
                self.assertFalse(s["suspended_everywhere"])
            m = self.metrics(d)
            self.assertEqual(m.get("listings", 0), 0)
            self.assertGreaterEqual(m.get("monitor_problems", 0), 2)
        self.assertEqual(self.log_has(d, "listed at"), [])
        self.assertEqual(self.log_has(d, "suspended for every site"), [])

    # ------------------------------------------------------ reply-driven block
    def test_blocklist_reply_suspends_address_for_that_site_only(self):
        dns = self.w.dns
        for name, ip in (("blk", "127.0.1.42"), ("ok", "127.0.1.43")):
            dns.add_mx("%s.test" % name, [(10, "mx.%s.test" % name)])
            dns.add_a("mx.%s.test" % name, ip)
        dns.start()
        # mx.blk.test refuses A1 only; mx.ok.test is sent to from A1 only
        peer = PeerSink(self, "127.0.1.42", self.w.smtp_port, block=[A1])
        sink = self.w.sink("127.0.1.43")
        d = self.daemon({
            'pool "weighted"': {"addresses": "%s=out1.test*1000, %s=out2.test" % (A1, A2)},
            'pool "solo"': {"addresses": "%s=out1.test" % A1},
            'site "mx.blk.test"': {"pool": "weighted", "connections": "1"},
            'site "mx.ok.test"': {"pool": "solo", "connections": "1"}})
        self.assertEqual(submit(d.routing_socket, "s@src.test", ["c1@blk.test"]), {})
        world.wait_until(lambda: peer.peers_of("c1@blk.test"), timeout=20,
                         what="c1 delivered from the other address")
        self.assertEqual(peer.peers_of("c1@blk.test"), [A2])
        self.assertIn(A1, peer.refused)  # it was tried from A1 first
        self.assertTrue(self.log_has(d, "mx.blk.test] source %s blocked here, "
                                     "suspended for this site" % A1,
                                     "zen.spamhaus.org"))
        self.assertEqual(self.log_has(d, "site suspended"), [])
        # the same address still sends to the other site
        self.assertEqual(self.deliver(d, sink, "c2@ok.test"), A1)
        if self.admin_up(d):
            site = self.site_json(d, "mx.blk.test")
            src = self.source(site, A1)
            self.assertTrue(src["blocked"])
            self.assertIn("zen.spamhaus.org", src["reason"])
            self.assertEqual(site["source_address"], A2)
            self.assertFalse(site["suspended"])
            ok = self.site_json(d, "mx.ok.test")
            self.assertFalse(self.source(ok, A1)["blocked"])
        # and the blocked site stays on A2, without another refusal
        n_refused = len(peer.refused)
        self.assertEqual(submit(d.routing_socket, "s@src.test", ["c3@blk.test"]), {})
        world.wait_until(lambda: peer.peers_of("c3@blk.test"), timeout=20,
                         what="c3 delivered")
        self.assertEqual(peer.peers_of("c3@blk.test"), [A2])
        self.assertEqual(len(peer.refused), n_refused)
        self.no_bounces(d)
        if not self.admin_up(d):
            return
        self.assertGreaterEqual(self.metrics(d).get("reply_blocks", 0), 1)
        # manual release is in the admin ops (mxsched_blocklist_release);
        # routed once the admin API has /v1/blocklists
        st, _ = d.admin("POST", "/v1/blocklists/release",
                        {"address": A1, "site": site["site"]})
        if st == 200:
            s = self.site_json(d, "mx.blk.test")
            self.assertFalse(self.source(s, A1)["blocked"])

    def test_every_address_blocked_site_waits_without_spending_attempts(self):
        dns = self.w.dns
        dns.add_mx("wall.test", [(10, "mx.wall.test")])
        dns.add_a("mx.wall.test", "127.0.1.45")
        dns.start()
        peer = PeerSink(self, "127.0.1.45", self.w.smtp_port, block=[A1, A2])
        d = self.daemon({"blocklists": {"release_after": "3s"}})
        self.assertEqual(submit(d.routing_socket, "s@src.test", ["w1@wall.test"]), {})
        d.wait_log("every source address of the pool is blocked", timeout=20)
        self.assertEqual(set(peer.refused), {A1, A2})
        world.wait_until(lambda: [r for r in d.delivery_records()
                                  if r["event"] == "Suspended"],
                         timeout=10, what="the recipient back on disk, waiting")
        # the receiver lifts its block; release_after brings the addresses back
        peer.block = set()
        world.wait_until(lambda: peer.peers_of("w1@wall.test"), timeout=20,
                         what="w1 delivered after the release")
        # the log line follows once the outcome is durable
        recs = world.wait_until(lambda: [r for r in d.delivery_records()
                                         if r["event"] == "Delivery"],
                                timeout=10, what="the Delivery line")
        self.assertEqual([r["recipient"] for r in recs], ["w1@wall.test"])
        self.assertEqual(recs[0]["attempt"], 1)  # waiting spent no attempt
        self.assertTrue(self.log_has(d, "usable here again (release_after passed)"))
        self.no_bounces(d)
        self.assertEqual([r for r in d.delivery_records()
                          if r["event"] == "TransientFailure"], [])

    # ----------------------------------------------------------------- AIMD
    def test_rate_limit_replies_cut_limits_then_clean_mail_restores(self):
        dns = self.w.dns
        dns.add_mx("aimd.test", [(10, "mx.aimd.test")])
        dns.add_a("mx.aimd.test", "127.0.1.44")
        dns.start()
        sink = self.w.sink("127.0.1.44", config={
            "tempfail_every": 3, "tempfail_at": "dot",
            "tempfail_reply": "421 4.7.0 Rate limited, try again later"})
        d = self.daemon({'site "default"': {"connections": "4"},
                         "delivery": {"throttle_min_rate": "30"}})
        rcpts = ["r%d@aimd.test" % i for i in range(24)]
        for r in rcpts:
            self.assertEqual(submit(d.routing_socket, "s@src.test", [r]), {})
        cut = re.compile(r"mx\.aimd\.test\] throttled \(source (\S+)\): "
                         r"connections (\d+), rate (\d+)/min: Rate limited")
        world.wait_until(lambda: cut.search(d.log_text()), timeout=20,
                         what="the throttle to cut")
        if self.admin_up(d):
            # the limits swing (cut, then raised by clean transactions):
            # catch them while reduced
            site = world.wait_until(
                lambda: (lambda s: s if s["throttle"]["reduced"] and
                         s["throttle"]["connections_allowed"] < 4 else None)(
                    self.site_json(d, "mx.aimd.test")),
                timeout=10, what="reduced limits shown")
            th = site["throttle"]
            self.assertIsNotNone(th["recipients_per_minute_allowed"])
            self.assertEqual(th["connections_shape"], 4)
            self.assertGreaterEqual(self.metrics(d).get("throttle_cuts", 0), 1)
        # the receiver stops limiting: everything arrives, then more clean
        # mail brings the limits back to the shape
        sink.reconfigure({})
        world.wait_until(lambda: set(rcpts) <= set(sink.delivered()), timeout=40,
                         what="all recipients delivered")
        # clean mail, a few messages at a time, until the limits are back
        more = []
        while not self.log_has(d, "mx.aimd.test] throttle lifted") and len(more) < 80:
            batch = ["m%d@aimd.test" % (len(more) + i) for i in range(4)]
            for r in batch:
                self.assertEqual(submit(d.routing_socket, "s@src.test", [r]), {})
            more += batch
            world.wait_until(lambda: set(more) <= set(sink.delivered()), timeout=30,
                             what="clean mail delivered")
        cuts = cut.findall(d.log_text())
        self.assertTrue(cuts)
        self.assertLess(min(int(c[1]) for c in cuts), 4)  # connections fell
        rates = [int(c[2]) for c in cuts]
        self.assertGreaterEqual(min(rates), 30)          # never below the floor
        self.assertLessEqual(rates[-1], rates[0])        # cuts never raise it
        self.assertTrue(self.log_has(d, "mx.aimd.test] throttle lifted"),
                        "limits not back after %d clean messages" % len(more))
        if self.admin_up(d):
            site = self.site_json(d, "mx.aimd.test")
            self.assertEqual(site["throttle"]["connections_allowed"], 4)
            self.assertIsNone(site["throttle"]["recipients_per_minute_allowed"])
            self.assertFalse(site["suspended"])
        # limits were honoured: never more than 4 connections at once
        self.assertLessEqual(sink.max_concurrent(), 4)
        self.assertGreater(len(sink.transactions(status="rejected")) +
                           len(sink.transactions(final_reply="421 4.7.0 Rate limited, try again later")), 0)
        self.no_bounces(d)
        # each recipient arrived once
        got = sink.delivered()
        self.assertEqual(sorted(got), sorted(rcpts + more))


if __name__ == "__main__":
    unittest.main()
