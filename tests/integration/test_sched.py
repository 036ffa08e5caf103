"""The MX-batching scheduler seen from the receiving MXs.

Real daemon, real dnsmasq, test MX sinks on 127.0.1.N. Every test checks
what arrived where, in how many connections and transactions, and what the
delivery log says.
"""
import collections
import time
import unittest

import world
from submit import submit, submit_many

FAST = {"retry_schedule": "1s", "site_backoff": "1s", "site_backoff_max": "2s"}


def site(**keys):
    return {'site "default"': {k: str(v) for k, v in keys.items()}}


class SchedTest(unittest.TestCase):
    def setUp(self):
        self.w = world.World(self)

    def daemon(self, *sections):
        return self.w.daemon(world.merge({"delivery": dict(FAST),
                                    "dns": {"error_ttl": "500ms", "negative_ttl": "1s"}},
                                   *sections))

    def final(self, d, n, timeout=30):
        """Wait until n recipients of submitted mail (not of the DSNs the
        daemon sends back to the test senders) reached a terminal
        delivery-log event."""
        terminal = ("Delivery", "Bounce", "Expiration")
        return world.wait_until(
            lambda: (lambda r: r if len(r) >= n else None)(
                [x for x in d.delivery_records() if x["event"] in terminal
                 and not x["recipient"].endswith("@src.test")]),
            timeout=timeout, what="%d terminal delivery-log records" % n)

    def assert_once_each(self, d, rcpts, event="Delivery"):
        recs = [r for r in d.delivery_records() if r["event"] in ("Delivery", "Bounce", "Expiration")
                and not r["recipient"].endswith("@src.test")]
        by = collections.Counter(r["recipient"] for r in recs)
        self.assertEqual(set(by), set(rcpts))
        self.assertEqual(max(by.values()), 1, "a recipient has two terminal records")
        self.assertEqual({r["event"] for r in recs}, {event})

    # -- shared MX set: one site, one connection, batches by domain / mixed
    def shared_world(self, multi_domain):
        dns = self.w.dns
        self.shared = ["d%d.test" % i for i in range(5)]
        for dom in self.shared:
            dns.add_mx(dom, [(10, "mx1.shared.test"), (20, "mx2.shared.test")])
        dns.add_a("mx1.shared.test", "127.0.1.1")
        dns.add_a("mx2.shared.test", "127.0.1.2")
        self.own = ["own%d.test" % i for i in range(3)]
        for i, dom in enumerate(self.own):
            dns.add_mx(dom, [(10, "mx.%s" % dom)])
            dns.add_a("mx.%s" % dom, "127.0.1.%d" % (10 + i))
        dns.start()
        self.sink = self.w.sink(["127.0.1.1", "127.0.1.2", "127.0.1.10", "127.0.1.11",
                                 "127.0.1.12"])
        d = self.daemon(site(connections=1, multi_domain=multi_domain))
        counts = [30, 70, 130, 170, 100]  # 500 recipients over 5 domains
        rcpts = ["u%d@%s" % (i, dom) for dom, n in zip(self.shared, counts) for i in range(n)]
        rcpts += ["v%d@%s" % (i, dom) for dom in self.own for i in range(10)]
        self.assertEqual(submit(d.routing_socket, "list@src.test", rcpts), {})
        self.final(d, len(rcpts))
        self.assert_once_each(d, rcpts)
        self.assertEqual(d.stop(), 0)  # connections are logged when they close
        return d, rcpts

    def test_deny_site_one_connection_one_txn_per_domain(self):
        d, rcpts = self.shared_world("deny")
        shared = self.sink.transactions("127.0.1.1") + self.sink.transactions("127.0.1.2")
        # one per (domain, 100 recipients): 1 + 1 + 2 + 2 + 1
        self.assertEqual(len(shared), 7)
        for t in shared:
            self.assertEqual(t["status"], "delivered")
            self.assertEqual(len({r["to"].split("@")[1] for r in t["rcpts"]}), 1)
            self.assertLessEqual(len(t["rcpts"]), 100)
        conns = self.sink.connections("127.0.1.1") + self.sink.connections("127.0.1.2")
        self.assertEqual(len(conns), 1, "the shared site must use exactly one connection")
        for ip in ("127.0.1.10", "127.0.1.11", "127.0.1.12"):
            self.assertEqual(len(self.sink.connections(ip)), 1)
            self.assertEqual(len(self.sink.transactions(ip)), 1)
        self.assertEqual(sorted(self.sink.delivered()), sorted(rcpts))

    def test_allow_site_mixes_domains(self):
        d, rcpts = self.shared_world("allow")
        shared = self.sink.transactions("127.0.1.1") + self.sink.transactions("127.0.1.2")
        # 500 recipients of 5 domains: one transaction per 100, whatever the domain
        self.assertEqual(sorted(len(t["rcpts"]) for t in shared), [100] * 5)
        self.assertTrue(any(len({r["to"].split("@")[1] for r in t["rcpts"]}) > 1
                            for t in shared), "no transaction mixed domains")
        self.assertEqual(sorted(self.sink.delivered()), sorted(rcpts))

    def test_connections_open_on_demand(self):
        self.w.dns.add_mx("one.test", [(10, "mx.one.test")])
        self.w.dns.add_a("mx.one.test", "127.0.1.20")
        self.w.dns.start()
        sink = self.w.sink("127.0.1.20")
        d = self.daemon()  # default shape: 10 connections
        submit(d.routing_socket, "a@src.test", ["x%d@one.test" % i for i in range(150)])
        self.final(d, 150)
        self.assertEqual(d.stop(), 0)
        # 2 batches ready -> never more than 2 connections
        self.assertLessEqual(len(sink.connections()), 2)
        self.assertEqual(len(sink.transactions(status="delivered")), 2)

    def test_learn_switches_to_deny(self):
        for dom in ("g1.test", "g2.test", "g3.test"):
            self.w.dns.add_mx(dom, [(5, "gmail-smtp-in.g.test")])
        self.w.dns.add_a("gmail-smtp-in.g.test", "127.0.1.30")
        self.w.dns.start()
        sink = self.w.sink("127.0.1.30", config={"one_domain": True})
        d = self.daemon(site(connections=1, multi_domain="learn"))
        rcpts = ["r%d@%s" % (i, dom) for dom in ("g1.test", "g2.test", "g3.test")
                 for i in range(20)]
        submit(d.routing_socket, "a@src.test", rcpts)
        self.final(d, len(rcpts))
        self.assert_once_each(d, rcpts)
        self.assertEqual(d.stop(), 0)
        self.assertIn("multi_domain learned: deny", d.log_text())
        self.assertEqual(sorted(sink.delivered()), sorted(rcpts))
        # the refused second domains never bounced and were retried on the same connection
        self.assertEqual(len(sink.connections()), 1)
        last = sink.transactions()[-2:]
        for t in last:
            self.assertEqual(len({r["to"].split("@")[1] for r in t["rcpts"]}), 1)

    def test_452_split_on_same_connection(self):
        self.w.dns.add_mx("big.test", [(10, "mx.big.test")])
        self.w.dns.add_a("mx.big.test", "127.0.1.40")
        self.w.dns.start()
        sink = self.w.sink("127.0.1.40", config={"max_rcpts": 30})
        d = self.daemon(site(connections=1))
        rcpts = ["p%d@big.test" % i for i in range(100)]
        submit(d.routing_socket, "a@src.test", rcpts)
        self.final(d, 100)
        self.assert_once_each(d, rcpts)
        self.assertEqual(d.stop(), 0)
        self.assertEqual(len(sink.connections()), 1)
        sizes = [t["accepted"] for t in sink.transactions(status="delivered")]
        self.assertEqual(sum(sizes), 100)
        self.assertGreaterEqual(len(sizes), 4)
        self.assertTrue(all(s <= 30 for s in sizes))
        self.assertIn("limit now 30", d.log_text())

    def test_dns_failures(self):
        dns = self.w.dns
        dns.add_null_mx("nullmx.test")
        dns.add_nxdomain_zone("nx.test")
        dns.add_servfail("broken.test")
        dns.add_mx("fallback.test", [(10, "mx1.fallback.test"), (20, "mx2.fallback.test")])
        dns.add_a("mx1.fallback.test", "127.0.1.51")  # nobody listens there
        dns.add_a("mx2.fallback.test", "127.0.1.52")
        dns.start()
        sink = self.w.sink("127.0.1.52")
        d = self.daemon()
        submit(d.routing_socket, "a@src.test",
               ["a@nullmx.test", "b@nx.test", "c@broken.test", "d@fallback.test"])
        recs = self.final(d, 3)
        by = {r["recipient"]: r for r in recs}
        self.assertEqual(by["a@nullmx.test"]["event"], "Bounce")
        self.assertEqual(by["a@nullmx.test"]["code"], 556)
        self.assertEqual(by["b@nx.test"]["event"], "Bounce")
        self.assertEqual(by["b@nx.test"]["code"], 550)
        self.assertEqual(by["d@fallback.test"]["event"], "Delivery")
        self.assertEqual(by["d@fallback.test"]["mx"], "mx2.fallback.test")
        self.assertNotIn("c@broken.test", by)
        world.wait_until(lambda: any(r["event"] == "TransientFailure" and
                                     r["recipient"] == "c@broken.test"
                                     for r in d.delivery_records()), what="SERVFAIL deferral")
        # fix the zone: the deferred recipient goes out
        dns.remove("broken.test")
        dns.add_mx("broken.test", [(10, "mx2.fallback.test")])
        dns.reload()
        recs = self.final(d, 4, timeout=30)
        self.assertEqual({r["recipient"]: r["event"] for r in recs}["c@broken.test"], "Delivery")
        self.assertEqual(sorted(sink.delivered()), ["c@broken.test", "d@fallback.test"])

    def test_suspension_probe_and_recovery(self):
        self.w.dns.add_mx("slow.test", [(10, "mx.slow.test")])
        self.w.dns.add_a("mx.slow.test", "127.0.1.60")
        self.w.dns.start()
        sink = self.w.sink("127.0.1.60", config={"replies": {
            "rcpt": "451 4.7.650 The mail server has been temporarily rate limited due to IP reputation"}})
        d = self.daemon()
        rcpts = ["s%d@slow.test" % i for i in range(5)]
        submit(d.routing_socket, "a@src.test", rcpts)
        d.wait_log("suspended for")
        world.wait_until(lambda: len(sink.connections()) >= 2, timeout=20,
                         what="a probe connection after the suspension")
        sink.reconfigure({})
        self.final(d, 5, timeout=30)
        recs = [r for r in d.delivery_records() if r["event"] == "Delivery"]
        self.assertEqual(sorted(r["recipient"] for r in recs), rcpts)
        # waiting at a suspended site spends no attempts
        self.assertEqual({r["attempt"] for r in recs}, {1})
        self.assertFalse([r for r in d.delivery_records() if r["event"] == "Bounce"])

    def test_expiry_while_suspended(self):
        self.w.dns.add_mx("dead.test", [(10, "mx.dead.test")])
        self.w.dns.add_a("mx.dead.test", "127.0.1.70")  # nobody listens
        self.w.dns.start()
        d = self.daemon({"spool": {"queue_lifetime": "3s"}})
        submit(d.routing_socket, "a@src.test", ["e@dead.test"])
        d.wait_log("suspended for")
        recs = self.final(d, 1, timeout=30)
        self.assertEqual(recs[0]["event"], "Expiration")
        self.assertEqual(recs[0]["recipient"], "e@dead.test")

    def test_messages_per_connection_cap(self):
        self.w.dns.add_mx("yahoo.test", [(1, "mta5.am0.yahoodns.test")])
        self.w.dns.add_a("mta5.am0.yahoodns.test", "127.0.1.80")
        self.w.dns.start()
        sink = self.w.sink("127.0.1.80", config={"max_messages": 20})
        d = self.daemon({'site "*.yahoodns.test"': {"messages_per_connection": "20",
                                                    "connections": "1"}})
        submit_many(d.routing_socket, "a@src.test",
                    [["m%d@yahoo.test" % i] for i in range(100)])
        self.final(d, 100, timeout=60)
        self.assert_once_each(d, ["m%d@yahoo.test" % i for i in range(100)])
        self.assertEqual(d.stop(), 0)
        conns = sink.connections()
        self.assertGreaterEqual(len(conns), 5)
        self.assertTrue(all(c["messages"] <= 20 for c in conns))
        self.assertFalse([t for t in sink.transactions() if t["status"] != "delivered"])

    def test_hung_exchanger_times_out_and_others_are_unaffected(self):
        self.w.dns.add_mx("hang.test", [(10, "mx.hang.test")])
        self.w.dns.add_a("mx.hang.test", "127.0.1.85")
        self.w.dns.add_mx("fine.test", [(10, "mx.fine.test")])
        self.w.dns.add_a("mx.fine.test", "127.0.1.86")
        self.w.dns.start()
        sink = self.w.sink(["127.0.1.85", "127.0.1.86"],
                           config={"listen": {"127.0.1.85": {"hang_at": "dot"}}})
        d = self.daemon({"delivery": {"final_timeout": "2s", "retry_schedule": "1h"}})
        submit(d.routing_socket, "a@src.test", ["h@hang.test", "f@fine.test"])
        self.final(d, 1)  # the healthy site is not held up
        self.assertEqual(sink.delivered("127.0.1.86"), ["f@fine.test"])
        rec = world.wait_until(lambda: [r for r in d.delivery_records()
                                        if r["event"] == "TransientFailure"],
                               timeout=20, what="the hung batch deferred")[0]
        self.assertEqual(rec["recipient"], "h@hang.test")
        self.assertEqual(sink.delivered("127.0.1.85"), [])
        self.assertFalse([r for r in d.delivery_records()
                          if r.get("recipient") == "h@hang.test" and r["event"] == "Delivery"])

    def test_slow_site_does_not_take_every_memory_slot(self):
        """A slow site with a backlog larger than the scheduler's memory
        keeps at most max_ready recipients ready; the rest wait on disk
        (no attempt spent, no log line), so another site's mail is not
        stuck behind it."""
        dns = self.w.dns
        dns.add_mx("slow.test", [(10, "mx.slow.test")])
        dns.add_a("mx.slow.test", "127.0.1.87")
        dns.add_mx("fast.test", [(10, "mx.fast.test")])
        dns.add_a("mx.fast.test", "127.0.1.88")
        dns.start()
        sink = self.w.sink(["127.0.1.87", "127.0.1.88"],
                           config={"listen": {"127.0.1.87": {"delay_ms": {"dot": 1000}}}})
        d = self.daemon({"delivery": {"max_inflight_recipients": "100",
                                      "ready_full_delay": "1s"},
                         'site "mx.slow.test"': {"connections": "1", "max_ready": "20"}})
        slow = ["s%d@slow.test" % i for i in range(200)]
        for i in range(0, len(slow), 10):
            self.assertEqual(submit(d.routing_socket, "a@src.test", slow[i:i + 10]), {})
        self.assertEqual(submit(d.routing_socket, "a@src.test", ["f@fast.test"]), {})
        world.wait_until(lambda: sink.delivered("127.0.1.88"), timeout=20,
                         what="the fast site's mail")
        # one transaction per slow message (10 recipients, 1 s each): without
        # the cap the first 100 slow recipients fill the memory and f@fast.test
        # is claimed after the last slow one, once 110 were delivered
        self.assertLess(len(sink.delivered("127.0.1.87")), 50)
        self.final(d, len(slow) + 1, timeout=60)
        self.assert_once_each(d, slow + ["f@fast.test"])
        self.assertEqual(sorted(sink.delivered("127.0.1.87")), sorted(slow))
        recs = [r for r in d.delivery_records() if r["event"] == "Delivery"]
        self.assertEqual({r["attempt"] for r in recs}, {1})
        self.assertEqual([r for r in d.delivery_records() if r["event"] == "Suspended"], [])
        st, sites = d.admin("GET", "/v1/sites")
        self.assertEqual(st, 200)
        s = [x for x in sites["sites"] if "mx.slow.test" in x["site"]][0]
        self.assertEqual(s["shape"]["max_ready"], 20)
        self.assertGreater(s["counters"]["ready_full"], 0)


if __name__ == "__main__":
    unittest.main()
