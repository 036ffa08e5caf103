"""Reputation: source-address pools, the DNSBL monitor, reply-driven blocks
and adaptive (AIMD) throttles, seen from the receiving MXs.

Real daemon, real dnsmasq serving fake block-list zones, test MX sinks that
record the source address (`peer`) of every connection. mxbatchd sends from
127.0.0.2 / 127.0.0.3 (pool addresses bound per connection).
"""
import os
import re
import smtplib
import ssl
import subprocess
import unittest

import world
from submit import body, submit
from test_smtpd_tls import ALICE, BOB

FAST = {"retry_schedule": "1s", "site_backoff": "1s", "site_backoff_max": "2s"}
A1, A2, A3, A4 = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
POOL = {'pool "default"': {"addresses": "%s=out1.test, %s=out2.test" % (A1, A2)}}


def reversed_name(ip, zone):
    return ".".join(reversed(ip.split("."))) + "." + zone


CTL = os.path.join(world.BUILD_DIR, "src", "cli", "mxbatchctl")
LISTED = "550 5.7.1 Service unavailable; client [%s] listed at zen.spamhaus.org"


def refuse(*peers):
    """mxsink "peers" overrides: these source addresses get a block-list
    refusal for every RCPT, the others are delivered."""
    return {"peers": {p: {"rcpt_rules": [{"regex": ".", "reply": LISTED % p}]}
                      for p in peers}}


class ReputationTest(unittest.TestCase):
    def setUp(self):
        self.w = world.World(self)

    def daemon(self, *sections):
        return self.w.daemon(world.merge({"delivery": dict(FAST),
                                    "dns": {"error_ttl": "500ms",
                                            "negative_ttl": "1s"}},
                                   POOL, *sections))

    @staticmethod
    def connects_from(sink, ip):
        """Connections the sinks accepted from source address ip."""
        return len([r for r in sink.records()
                    if r.get("type") == "connect" and r.get("peer") == ip])

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

    def ctl(self, d, *args, expect=0):
        """mxbatchctl against d; its standard output"""
        p = subprocess.run([CTL, "-c", d.config_path] + list(args),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, expect, (args, p.stdout, p.stderr))
        return p.stdout

    # ------------------------------------------------- pool by tenant/listener
    def test_pool_chosen_by_tenant_then_listener_then_site(self):
        """One site, four streams: each arrives only from its pool's address,
        and no connection carries mail of two pools."""
        dns = self.w.dns
        dns.add_mx("dest.test", [(10, "mx.dest.test")])
        dns.add_a("mx.dest.test", "127.0.1.46")
        dns.start()
        sink = self.w.sink("127.0.1.46")
        cert = self.w.cert(names=("mx.test",), ips=("127.0.0.1",))
        accounts = self.w.path("accounts")
        with open(accounts, "w") as f:
            f.write("alice %s tenant=acme senders=*\nbob %s senders=*\n" % (ALICE, BOB))
        relay_port = world.free_port()
        bulk_sock = self.w.path("bulk.sock")
        d = self.daemon({
            'pool "default"': {"addresses": "%s=out1.test" % A1},
            'pool "acme"': {"addresses": "%s=out2.test" % A2},
            'pool "bulk"': {"addresses": "%s=out3.test" % A3},
            'pool "site"': {"addresses": "%s=out4.test" % A4},
            'site "mx.dest.test"': {"pool": "site", "connections": "2"},
            'tenant "acme"': {"pool": "acme"},
            'listen "bulk"': {"socket": bulk_sock, "pool": "bulk"},
            'listen "relay"': {"address": "127.0.0.1:%d" % relay_port,
                               "tls_cert": cert.cert, "tls_key": cert.key,
                               "auth": "required", "accounts": accounts,
                               "pool": "bulk"}})
        ctx = ssl.create_default_context(cafile=cert.ca)

        def relay(user, password, rcpts):
            with smtplib.SMTP("127.0.0.1", relay_port, timeout=30) as c:
                c.ehlo("customer.test")
                c.starttls(context=ctx)
                c.ehlo("customer.test")
                c.login(user, password)
                for r in rcpts:
                    self.assertEqual(c.sendmail("s@src.test", [r], body()), {})

        streams = {  # stream -> (recipients, the only address allowed)
            "routing": (["rt%d@dest.test" % i for i in range(4)], A4),
            "bulk": (["bk%d@dest.test" % i for i in range(4)], A3),
            "acme": (["ac%d@dest.test" % i for i in range(4)], A2),
            "bob": (["bo%d@dest.test" % i for i in range(4)], A3),
        }
        for r in streams["routing"][0]:
            self.assertEqual(submit(d.routing_socket, "s@src.test", [r]), {})
        for r in streams["bulk"][0]:
            self.assertEqual(submit(bulk_sock, "s@src.test", [r]), {})
        relay("alice", "s3cret-alice", streams["acme"][0])
        relay("bob", "s3cret-bob", streams["bob"][0])
        every = sum((v[0] for v in streams.values()), [])
        world.wait_until(lambda: set(every) <= set(sink.delivered()), timeout=30,
                         what="every stream delivered")
        peer = {r["conn"]: r["peer"] for r in sink.records()
                if r.get("type") == "connect"}
        pool_of = {A2: "acme", A3: "bulk", A4: "site"}
        for name, (rcpts, ip) in streams.items():
            got = {peer[t["conn"]] for t in sink.transactions(status="delivered")
                   for x in t["rcpts"] if x["to"] in rcpts}
            self.assertEqual(got, {ip}, name)
        # a connection carries the mail of one pool only
        by_conn = {}
        for t in sink.transactions(status="delivered"):
            for x in t["rcpts"]:
                src = [n for n, (rc, _) in streams.items() if x["to"] in rc][0]
                by_conn.setdefault(t["conn"], set()).add(pool_of[streams[src][1]])
        self.assertTrue(all(len(v) == 1 for v in by_conn.values()), by_conn)
        self.assertEqual(sorted(sink.delivered()), sorted(every))  # each once
        self.assertNotIn(A1, peer.values())  # the site's pool beat "default"
        # the admin API shows the site and its twins, one per pool
        st, res = d.admin("GET", "/v1/sites")
        self.assertEqual(st, 200, res)
        pools = {s["site"]: s["pool"] for s in res["sites"]
                 if any(m["host"] == "mx.dest.test" for m in s["mx"])}
        self.assertEqual(pools, {"10:mx.dest.test": "site",
                                 "10:mx.dest.test@bulk": "bulk",
                                 "10:mx.dest.test@acme": "acme"})
        self.no_bounces(d)

    def test_undeclared_pool_of_tenant_or_listener_is_a_start_error(self):
        for sect in ('tenant "acme"', 'listen "routing"'):
            d = self.w.daemon(world.merge(POOL, {sect: {"pool": "nope"}}), start=False)
            with open(d.config_path, "w") as f:
                f.write(d.config_text())
            r = subprocess.run([d.binary, "--foreground", "--config",
                                      d.config_path], capture_output=True,
                                     text=True, timeout=20, cwd=d.dir)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn('[%s] pool: no [pool "nope"] declared' % sect,
                          r.stdout + r.stderr)

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
        opened = self.connects_from(sink, first)
        self.assertEqual(self.deliver(d, sink, "a2@dest.test"), other)
        self.assertEqual(self.deliver(d, sink, "a3@dest.test"), other)
        self.assertEqual(self.connects_from(sink, first), opened)  # not used
        site = self.site_json(d, "mx.dest.test")
        self.assertTrue(self.source(site, first)["listed"])
        self.assertTrue(self.source(site, first)["suspended_everywhere"])
        self.assertEqual(site["source_address"], other)
        self.assertGreaterEqual(self.metrics(d).get("listings", 0), 1)
        st, bl = d.admin("GET", "/v1/blocklists")
        self.assertEqual(st, 200, bl)
        a = [x for x in bl["addresses"] if x["address"] == first][0]
        self.assertTrue(a["listed"])
        self.assertTrue(a["suspended"])
        self.assertEqual(a["zones"][0]["state"], "listed")
        self.assertEqual(a["zones"][0]["reason"], "listed for a test")
        self.assertIsNotNone(a["zones"][0]["first_seen_ms"])
        self.assertIsNotNone(a["zones"][0]["last_checked_ms"])
        b = [x for x in bl["addresses"] if x["address"] == other][0]
        self.assertFalse(b["listed"])
        self.assertEqual(b["zones"][0]["state"], "clean")
        # delisting releases it: the site goes back to its own address
        dns.remove(reversed_name(first, "zen.test"))
        dns.reload()
        world.wait_until(lambda: self.log_has(d, "[%s] delisted everywhere" % first),
                         timeout=8, what="the delisting seen")
        self.assertEqual(self.deliver(d, sink, "a4@dest.test"), first)
        self.assertGreaterEqual(self.metrics(d).get("delistings", 0), 1)
        st, bl = d.admin("GET", "/v1/blocklists")
        a = [x for x in bl["addresses"] if x["address"] == first][0]
        self.assertEqual((a["listed"], a["suspended"], a["zones"][0]["state"]),
                         (False, False, "clean"))
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
        site = self.site_json(d, "mx.dest.test")
        self.assertEqual(site["source_address"], first)
        for s in site["sources"]:
            self.assertFalse(s["listed"])
            self.assertFalse(s["suspended_everywhere"])
            self.assertFalse(s["blocked"])
        m = self.metrics(d)
        self.assertEqual(m.get("listings", 0), 0)
        self.assertGreaterEqual(m.get("monitor_problems", 0), 2)
        st, bl = d.admin("GET", "/v1/blocklists")
        self.assertEqual(st, 200, bl)
        for a in bl["addresses"]:
            self.assertEqual((a["listed"], a["suspended"]), (False, False))
            self.assertEqual(a["zones"][0]["state"], "misconfigured")
            self.assertEqual(a["zones"][0]["answer"], "127.255.255.254")
        self.assertEqual(self.log_has(d, "listed at"), [])
        self.assertEqual(self.log_has(d, "suspended for every site"), [])
        self.assertEqual(self.log_has(d, "source address now"), [])
        self.no_bounces(d)

    # ------------------------------------------------- domain block lists
    def held(self, d, rcpt):
        return [r for r in d.delivery_records()
                if r["event"] == "Suspended" and r["recipient"] == rcpt]

    def test_domain_blocklist_holds_the_sending_domain_mail(self):
        dns = self.w.dns
        dns.add_mx("dest.test", [(10, "mx.dest.test")])
        dns.add_a("mx.dest.test", "127.0.1.47")
        dns.add_a("brand.test.dbl.test", "127.0.1.255")  # "IP queries prohibited"
        dns.start()
        sink = self.w.sink("127.0.1.47")
        d = self.daemon({"blocklists": {
            "zones": "zen.test", "interval": "1s", "domain_zones": "dbl.test",
            "domains": "src.test, brand.test", "domain_action": "suspend"}})
        world.wait_until(lambda: self.log_has(
            d, "[brand.test] block list dbl.test refuses our queries (127.0.1.255)"),
            timeout=8, what="the refusal code reported as a monitor problem")
        self.assertIn(self.deliver(d, sink, "d0@dest.test"), (A1, A2))
        # the domain list lists src.test
        dns.add_a("src.test.dbl.test", "127.0.1.2")
        dns.add_txt("src.test.dbl.test", "spam domain (a test)")
        dns.reload()
        world.wait_until(lambda: self.log_has(
            d, "[src.test] listed at dbl.test (127.0.1.2): spam domain (a test)"),
            timeout=8, what="the domain listing seen")
        d.wait_log("[src.test] sending domain held (its mail waits)", timeout=5)
        # its mail (and its subdomains') waits, other senders' mail goes
        self.assertEqual(submit(d.routing_socket, "s@src.test", ["h1@dest.test"]), {})
        self.assertEqual(submit(d.routing_socket, "b@Bounce.Src.Test", ["h2@dest.test"]), {})
        for r in ("h1@dest.test", "h2@dest.test"):
            world.wait_until(lambda: self.held(d, r), timeout=10, what="%s held" % r)
        self.assertIn("sending domain src.test listed at dbl.test: spam domain",
                      self.held(d, "h1@dest.test")[0]["reply"])
        self.assertEqual(submit(d.routing_socket, "s@other.test", ["h3@dest.test"]), {})
        world.wait_until(lambda: "h3@dest.test" in sink.delivered(), timeout=10,
                         what="another sender's mail delivered")
        self.assertNotIn("h1@dest.test", sink.delivered())
        self.assertNotIn("h2@dest.test", sink.delivered())
        st, bl = d.admin("GET", "/v1/blocklists")
        self.assertEqual(st, 200, bl)
        self.assertEqual((bl["domain_zones"], bl["domain_action"]), (["dbl.test"], "suspend"))
        doms = {x["domain"]: x for x in bl["domains"]}
        self.assertEqual((doms["src.test"]["listed"], doms["src.test"]["suspended"]),
                         (True, True))
        self.assertGreaterEqual(doms["src.test"]["held_recipients"], 2)
        self.assertEqual(doms["src.test"]["zones"][0]["state"], "listed")
        self.assertEqual(doms["src.test"]["zones"][0]["reason"], "spam domain (a test)")
        self.assertEqual((doms["brand.test"]["listed"],
                          doms["brand.test"]["zones"][0]["state"]),
                         (False, "misconfigured"))
        for a in bl["addresses"]:  # a domain listing is not an address's
            self.assertFalse(a["listed"])
        m = self.metrics(d)
        self.assertGreaterEqual(m.get("domain_listings", 0), 1)
        self.assertGreaterEqual(m.get("held", 0), 2)
        self.assertEqual(m.get("listings", 0), 0)
        # delisting lets the held mail go, with no attempt spent
        dns.remove("src.test.dbl.test")
        dns.reload()
        d.wait_log("[src.test] sending domain delisted everywhere", timeout=8)
        world.wait_until(lambda: {"h1@dest.test", "h2@dest.test"} <= set(sink.delivered()),
                         timeout=15, what="the held mail delivered")
        def delivered_lines():
            recs = [r for r in d.delivery_records() if r["event"] == "Delivery" and
                    r["recipient"] in ("h1@dest.test", "h2@dest.test")]
            return recs if len(recs) == 2 else None
        recs = world.wait_until(delivered_lines, timeout=10, what="their Delivery lines")
        self.assertEqual([r["attempt"] for r in recs], [1, 1])
        self.assertGreaterEqual(self.metrics(d).get("domain_delistings", 0), 1)
        # listed again: held again; the operator releases it by name
        dns.add_a("src.test.dbl.test", "127.0.1.2")
        dns.reload()
        world.wait_until(lambda: len(self.log_has(d, "[src.test] sending domain held")) == 2,
                         timeout=8, what="the second listing")
        self.assertEqual(submit(d.routing_socket, "s@src.test", ["h4@dest.test"]), {})
        world.wait_until(lambda: self.held(d, "h4@dest.test"), timeout=10, what="h4 held")
        out = self.ctl(d, "blocklists")
        self.assertRegex(out, r"(?m)^SENDING DOMAIN .*\n(.*\n)*src\.test +yes +held +dbl\.test=listed$")
        self.assertIn("\n    listed: listed at dbl.test", out)
        self.assertRegex(out, r"(?m)^brand\.test +no +active +dbl\.test=misconfigured$")
        self.assertEqual(self.ctl(d, "unblock", "src.test"), "released\n")
        st, res = d.admin("GET", "/v1/blocklists")
        self.assertEqual(st, 200, res)
        doms = {x["domain"]: x for x in res["domains"]}
        self.assertEqual((doms["src.test"]["listed"], doms["src.test"]["released"]),
                         (True, True))
        world.wait_until(lambda: "h4@dest.test" in sink.delivered(), timeout=15,
                         what="h4 delivered after the release")
        st, _ = d.admin("POST", "/v1/blocklists/release", {"address": "nope.test"})
        self.assertEqual(st, 404)
        self.ctl(d, "unblock", "nope.test", expect=1)
        self.ctl(d, "unblock", expect=2)
        self.no_bounces(d)
        self.assertEqual(self.log_has(d, "source address now"), [])

    def test_domain_listing_alert_only_by_default(self):
        dns = self.w.dns
        dns.add_mx("dest.test", [(10, "mx.dest.test")])
        dns.add_a("mx.dest.test", "127.0.1.48")
        dns.add_a("src.test.dbl.test", "127.0.1.2")
        dns.add_txt("src.test.dbl.test", "listed for a test")
        dns.start()
        sink = self.w.sink("127.0.1.48")
        d = self.daemon({"blocklists": {"interval": "1s", "domain_zones": "dbl.test",
                                        "domains": "src.test"}})
        d.wait_log("[src.test] sending domain alert only", timeout=8)
        self.deliver(d, sink, "al@dest.test")  # s@src.test: not held
        self.assertEqual(self.held(d, "al@dest.test"), [])
        st, bl = d.admin("GET", "/v1/blocklists")
        dom = bl["domains"][0]
        self.assertEqual((dom["domain"], dom["listed"], dom["suspended"], bl["domain_action"]),
                         ("src.test", True, False, "alert"))

    # ------------------------------------------------------ reply-driven block
    @staticmethod
    def peers_of(sink, rcpt, ip=None):
        """Source addresses of the transactions that delivered rcpt."""
        return [t["peer"] for t in sink.transactions(ip, status="delivered")
                if rcpt in [r["to"] for r in t["rcpts"]]]

    @staticmethod
    def refused(sink, ip=None):
        """Source addresses of every RCPT refused with the listing."""
        return [t["peer"] for t in sink.transactions(ip)
                for r in t["rcpts"] if "listed at zen.spamhaus.org" in r["reply"]]

    def test_blocklist_reply_suspends_address_for_that_site_only(self):
        dns = self.w.dns
        for name, ip in (("blk", "127.0.1.42"), ("ok", "127.0.1.43")):
            dns.add_mx("%s.test" % name, [(10, "mx.%s.test" % name)])
            dns.add_a("mx.%s.test" % name, ip)
        dns.start()
        # mx.blk.test refuses A1 only (mxsink per-peer replies); mx.ok.test
        # takes everything and is sent to from A1 only
        sink = self.w.sink(["127.0.1.42", "127.0.1.43"],
                           config={"listen": {"127.0.1.42": refuse(A1)}})
        d = self.daemon({
            'pool "weighted"': {"addresses": "%s=out1.test*1000, %s=out2.test" % (A1, A2)},
            'pool "solo"': {"addresses": "%s=out1.test" % A1},
            'site "mx.blk.test"': {"pool": "weighted", "connections": "1"},
            'site "mx.ok.test"': {"pool": "solo", "connections": "1"}})
        self.assertEqual(submit(d.routing_socket, "s@src.test", ["c1@blk.test"]), {})
        world.wait_until(lambda: self.peers_of(sink, "c1@blk.test"), timeout=20,
                         what="c1 delivered from the other address")
        self.assertEqual(self.peers_of(sink, "c1@blk.test"), [A2])
        world.wait_until(lambda: set(self.refused(sink)) == {A1}, timeout=10,
                         what="A1 refused first")  # logged when its txn ends
        self.assertTrue(self.log_has(d, "mx.blk.test] source %s blocked here, "
                                     "suspended for this site" % A1,
                                     "zen.spamhaus.org"))
        self.assertEqual(self.log_has(d, "site suspended"), [])
        # the same address still sends to the other site
        self.assertEqual(self.deliver(d, sink, "c2@ok.test"), A1)
        site = self.site_json(d, "mx.blk.test")
        src = self.source(site, A1)
        self.assertTrue(src["blocked"])
        self.assertIn("zen.spamhaus.org", src["reason"])
        self.assertEqual(site["source_address"], A2)
        self.assertFalse(site["suspended"])
        ok = self.site_json(d, "mx.ok.test")
        self.assertFalse(self.source(ok, A1)["blocked"])
        st, bl = d.admin("GET", "/v1/blocklists")
        self.assertEqual(st, 200, bl)
        a1 = [x for x in bl["addresses"] if x["address"] == A1][0]
        self.assertFalse(a1["listed"])  # not a DNSBL listing: one site only
        self.assertEqual([b["site"] for b in a1["blocked_at"]], [site["site"]])
        # more mail to the blocked site goes on from A2, without another
        # refusal, while A1 keeps delivering to the other site
        n_refused = len(self.refused(sink))
        for i in range(3):
            self.assertEqual(self.deliver(d, sink, "c%d@blk.test" % (i + 3)), A2)
            self.assertEqual(self.deliver(d, sink, "o%d@ok.test" % i), A1)
        self.assertEqual(len(self.refused(sink)), n_refused)
        self.assertEqual({c["peer"] for c in sink.records()
                          if c.get("type") == "connect" and
                          c["listen"].startswith("127.0.1.43:")}, {A1})
        self.no_bounces(d)
        self.assertGreaterEqual(self.metrics(d).get("reply_blocks", 0), 1)
        # the operator releases it: A1 is the site's address again (and is
        # refused again by this receiver, which blocks it again)
        out = self.ctl(d, "blocklists")
        self.assertRegex(out, r"(?m)^%s +no +active +clean\n    blocked at %s since "
                         r"[-0-9: ]+ \(suspended\): .*zen\.spamhaus\.org" % (re.escape(A1),
                                                                  re.escape(site["site"])))
        self.assertEqual(self.ctl(d, "unblock", A1, "--site", site["site"]), "released\n")
        s = self.site_json(d, "mx.blk.test")
        self.assertFalse(self.source(s, A1)["blocked"])
        self.assertEqual(s["source_address"], A1)

    def test_every_address_blocked_site_waits_without_spending_attempts(self):
        dns = self.w.dns
        dns.add_mx("wall.test", [(10, "mx.wall.test")])
        dns.add_a("mx.wall.test", "127.0.1.45")
        dns.start()
        sink = self.w.sink("127.0.1.45", config=refuse(A1, A2))
        d = self.daemon({"blocklists": {"release_after": "3s"}})
        self.assertEqual(submit(d.routing_socket, "s@src.test", ["w1@wall.test"]), {})
        d.wait_log("every source address of the pool is blocked", timeout=20)
        # (the sink logs a transaction when it ends, just after our log line)
        world.wait_until(lambda: set(self.refused(sink)) == {A1, A2}, timeout=10,
                         what="both addresses refused")
        world.wait_until(lambda: [r for r in d.delivery_records()
                                  if r["event"] == "Suspended"],
                         timeout=10, what="the recipient back on disk, waiting")
        # the receiver lifts its block; release_after brings the addresses back
        sink.reconfigure({})
        world.wait_until(lambda: self.peers_of(sink, "w1@wall.test"), timeout=20,
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
