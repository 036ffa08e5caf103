"""Delay warnings, NOTIFY=SUCCESS "relayed" DSNs and operator bounces, end
to end: what reaches the sender's MX, and what the delivery log says.

Real daemon, dnsmasq and sinks: the remote MX (t.test) that defers the
"slow" recipients, a second remote (n.test) that does not offer DSN, and
the sender's own MX (src.test) that receives the DSNs.

A DSN is written in the same store batch as the outcomes it reports, and
both the outcome lines and the DSN line of the delivery log are written
once that batch is durable: when an outcome line is in the log, the DSN
that goes with it (if any) is logged too. The tests count on that instead
of waiting for something not to happen.
"""
import collections
import email
import email.policy
import os
import subprocess
import unittest

import world
from submit import body, submit

CTL = os.path.join(world.BUILD_DIR, "src", "cli", "mxbatchctl")


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def status_blocks(msg):
    """The per-recipient field blocks of a multipart/report DSN."""
    parts = list(msg.iter_parts())
    assert parts[1].get_content_type() == "message/delivery-status"
    return parts[1].get_payload()[1:]


class NotifyWorld(unittest.TestCase):
    bounce = {}
    delivery = {"retry_schedule": "1s"}

    def setUp(self):
        w = self.w = world.World(self)
        w.dns.add_mx("t.test", [(10, "mx.t.test")])
        w.dns.add_a("mx.t.test", "127.0.1.92")
        w.dns.add_mx("n.test", [(10, "mx.n.test")])
        w.dns.add_a("mx.n.test", "127.0.1.93")
        w.dns.add_mx("s.test", [(10, "mx.s.test")])
        w.dns.add_a("mx.s.test", "127.0.1.95")
        w.dns.add_mx("src.test", [(10, "mx.src.test")])
        w.dns.add_a("mx.src.test", "127.0.1.94")
        w.dns.start()
        self.remote = w.sink("127.0.1.92", config={"rcpt_rules": [
            {"match": "slow", "reply": "451 4.2.0 mailbox temporarily unavailable"}]})
        self.nodsn = w.sink("127.0.1.93", config={"ehlo": {"dsn": False}})
        self.home = w.sink("127.0.1.94", save_bodies=True)
        self.d = w.daemon({"delivery": dict(self.delivery),
                           "spool": {"queue_lifetime": "1h"},
                           "bounce": dict(self.bounce)})

    def records(self, event=None, rcpt=None):
        return [r for r in self.d.delivery_records()
                if (event is None or r["event"] == event)
                and (rcpt is None or r.get("recipient") == rcpt)]

    def dsn_events(self, action=None):
        return [r for r in self.records("DSN") if action is None or r["action"] == action]

    def dsns_at_home(self, n, what):
        world.wait_until(lambda: len(self.home.transactions(status="delivered")) >= n,
                         timeout=20, what=what)
        got = [t for t in self.home.transactions(status="delivered") if t["mail_from"] == ""]
        return [parse(self.home.body(t)) for t in got]

    def deferrals(self, rcpt):
        return len(self.records("TransientFailure", rcpt))


class DelayWarningOnceTest(NotifyWorld):
    bounce = {"delay_warning": "1500ms", "delay_warning_interval": "1h"}

    def test_one_warning_for_delay_recipients(self):
        delay = ["slow-d1@t.test", "slow-d2@t.test"]
        never, failure = "slow-n@t.test", "slow-f@t.test"
        self.assertEqual(submit(self.d.routing_socket, "author@src.test", delay,
                                body("weekly digest"), mail_options=["ENVID=wk-12"],
                                rcpt_options=["NOTIFY=DELAY,FAILURE"]), {})
        submit(self.d.routing_socket, "author@src.test", [never], body("x"),
               rcpt_options=["NOTIFY=NEVER"])
        submit(self.d.routing_socket, "author@src.test", [failure], body("y"),
               rcpt_options=["NOTIFY=FAILURE"])
        mid = [r["id"] for r in self.records("Reception") if r["recipients"] == 2][0]
        # well past the first warning: every recipient deferred 4 times
        world.wait_until(lambda: all(self.deferrals(a) >= 4
                                     for a in delay + [never, failure]),
                         timeout=40, what="four deferrals each")
        warned = self.dsn_events("delayed")
        # each NOTIFY=DELAY recipient once (both in one DSN if they were
        # deferred in the same round), nobody else
        self.assertEqual(sum(e["recipients"] for e in warned), 2, warned)
        self.assertEqual({e["id"] for e in warned}, {mid})
        self.assertEqual(self.dsn_events(), warned)
        msgs = self.dsns_at_home(len(warned), "the delay warnings")
        self.assertEqual(len(msgs), len(warned))
        finals = []
        for msg in msgs:
            self.assertEqual(msg.get_content_type(), "multipart/report")
            self.assertEqual(msg.get_param("report-type"), "delivery-status")
            self.assertIn("Delayed", str(msg["Subject"]))
            self.assertEqual(str(msg["To"]).strip("<>"), "author@src.test")
            per_message = list(msg.iter_parts())[1].get_payload()[0]
            self.assertEqual(str(per_message["Original-Envelope-Id"]), "wk-12")
            for b in status_blocks(msg):
                finals.append(str(b["Final-Recipient"]).split(";")[1].strip())
                self.assertEqual(str(b["Action"]), "delayed")
                self.assertTrue(str(b["Status"]).startswith("4."), b["Status"])
                self.assertIsNotNone(b["Will-Retry-Until"])
                self.assertIn("451", str(b["Diagnostic-Code"]))
        self.assertEqual(sorted(finals), sorted(delay))
        # still queued: no terminal line yet, for anyone
        for a in delay + [never, failure]:
            self.assertEqual([r for r in self.records(rcpt=a)
                              if r["event"] in ("Delivery", "Bounce", "Expiration")], [])


class DelayWarningIntervalTest(NotifyWorld):
    bounce = {"delay_warning": "1ms", "delay_warning_interval": "1ms"}

    def test_warning_again_after_the_interval(self):
        rcpts = ["slow-r1@t.test", "slow-r2@t.test"]
        submit(self.d.routing_socket, "author@src.test", rcpts, body("z"))  # no NOTIFY
        submit(self.d.routing_socket, "", ["slow-null@t.test"], body("a bounce"))
        world.wait_until(lambda: all(self.deferrals(a) >= 3
                                     for a in rcpts + ["slow-null@t.test"]),
                         timeout=30, what="3 deferrals each")
        records = self.d.delivery_records()
        mid = [r["id"] for r in records if r["event"] == "Reception"
               and r.get("sender") == "author@src.test"][0]
        warned = [r for r in records if r["event"] == "DSN"]
        # never a warning to the null sender
        self.assertEqual({r["id"] for r in warned}, {mid})
        deferred = [r for r in records if r["event"] == "TransientFailure"
                    and r["id"] == mid]
        # the first attempt of both was one transaction: one warning for both
        self.assertEqual(warned[0]["recipients"], 2)
        # a warning with every deferral: the interval is over each time
        self.assertEqual({r["action"] for r in warned}, {"delayed"})
        self.assertGreaterEqual(sum(r["recipients"] for r in warned), len(deferred))
        self.assertGreaterEqual(len(deferred), 6)
        for m in self.dsns_at_home(2, "two warnings"):
            self.assertEqual({str(b["Action"]) for b in status_blocks(m)}, {"delayed"})


class RelayedTest(NotifyWorld):
    def test_success_without_remote_dsn_is_relayed(self):
        submit(self.d.routing_socket, "author@src.test", ["ok1@n.test", "ok2@n.test"],
               body("invoice"), rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
        world.wait_until(lambda: len(self.records("Delivery")) == 2, timeout=20,
                         what="two deliveries")
        self.assertEqual([e["recipients"] for e in self.dsn_events()], [2])
        self.assertEqual(self.dsn_events()[0]["action"], "relayed")
        msgs = self.dsns_at_home(1, "the relayed DSN")
        self.assertEqual(len(msgs), 1)
        blocks = status_blocks(msgs[0])
        self.assertEqual(sorted(str(b["Final-Recipient"]).split(";")[1].strip()
                                for b in blocks), ["ok1@n.test", "ok2@n.test"])
        for b in blocks:
            self.assertEqual(str(b["Action"]), "relayed")
            self.assertTrue(str(b["Status"]).startswith("2."))
            self.assertEqual(str(b["Remote-MTA"]).split(";")[1].strip(), "mx.n.test")
        # NOTIFY not passed on: that server was never told
        rcpts = self.nodsn.transactions(status="delivered")[0]["rcpts"]
        self.assertEqual(len(rcpts), 2)

    def test_success_with_remote_dsn_is_passed_on(self):
        submit(self.d.routing_socket, "author@src.test", ["ok3@t.test"],
               body("invoice"), rcpt_options=["NOTIFY=SUCCESS"])
        world.wait_until(lambda: len(self.records("Delivery")) == 1, timeout=20,
                         what="the delivery")
        self.assertEqual(self.dsn_events(), [])

    def test_plain_delivery_gets_no_dsn(self):
        submit(self.d.routing_socket, "author@src.test", ["ok4@n.test"], body("x"))
        world.wait_until(lambda: len(self.records("Delivery")) == 1, timeout=20,
                         what="the delivery")
        self.assertEqual(self.dsn_events(), [])


class AdminBounceTest(NotifyWorld):
    # deferred recipients wait an hour: they are on disk, not claimed
    delivery = {"retry_schedule": "1h"}

    def terminal_counts(self):
        return collections.Counter(
            r["recipient"] for r in self.d.delivery_records()
            if r["event"] in ("Delivery", "Bounce", "Expiration")
            or (r["event"] == "AdminAction" and r.get("terminal")))

    def message_id(self, rcpt):
        return [r["id"] for r in self.records("TransientFailure", rcpt)][0]

    def test_delete_with_bounce(self):
        rcpts = ["slow%d@t.test" % i for i in range(3)] + ["ok@t.test"]
        submit(self.d.routing_socket, "author@src.test", rcpts, body("catalogue"),
               rcpt_options=["NOTIFY=FAILURE"])
        world.wait_until(lambda: all(self.deferrals("slow%d@t.test" % i) == 1
                                     for i in range(3)), timeout=20, what="deferrals")
        mid = self.message_id("slow0@t.test")
        # one more message, held: its recipients are on disk only
        submit(self.d.routing_socket, "other@src.test", ["slow9@t.test"], body("held"))
        held = [r["id"] for r in self.records("Reception") if r["sender"] == "other@src.test"][0]
        st, _ = self.d.admin("POST", "/v1/messages/%s/hold" % held)
        self.assertEqual(st, 200)
        st, res = self.d.admin("DELETE", "/v1/messages/%s?bounce=1" % mid, timeout=60)
        self.assertEqual(st, 200, res)
        self.assertEqual((res["action"], res["recipients"]), ("bounce", 3))
        st, res = self.d.admin("DELETE", "/v1/messages/%s?bounce=1" % held, timeout=60)
        self.assertEqual((st, res["recipients"]), (200, 1))
        st, _ = self.d.admin("GET", "/v1/messages/" + mid)
        self.assertEqual(st, 404)
        msgs = self.dsns_at_home(2, "two DSNs")
        self.assertEqual(len(msgs), 2)
        by_to = {str(m["To"]).strip("<>"): m for m in msgs}
        blocks = status_blocks(by_to["author@src.test"])
        self.assertEqual(sorted(str(b["Final-Recipient"]).split(";")[1].strip()
                                for b in blocks), ["slow%d@t.test" % i for i in range(3)])
        for b in blocks:
            self.assertEqual((str(b["Action"]), str(b["Status"])), ("failed", "5.0.0"))
            self.assertIn("deleted by administrator", str(b["Diagnostic-Code"]))
        self.assertEqual(len(status_blocks(by_to["other@src.test"])), 1)
        counts = self.terminal_counts()
        for a in rcpts + ["slow9@t.test"]:
            self.assertEqual(counts[a], 1, a)
        bounces = self.records("Bounce")
        self.assertEqual(len(bounces), 4)
        self.assertEqual({(b["by"], b["category"], b["enhanced"]) for b in bounces},
                         {("admin", "admin", "5.0.0")})
        acts = [(a["action"], a["id"]) for a in self.records("AdminAction")
                if a["action"] == "bounce"]
        self.assertEqual(sorted(acts), sorted([("bounce", mid), ("bounce", held)]))
        self.assertEqual(len(self.dsn_events("failed")), 2)
        st, res = self.d.admin("DELETE", "/v1/messages/%s?bounce=1" % mid)
        self.assertEqual(st, 404)

    def test_bounce_during_delivery(self):
        """Recipients in a transaction when the bounce comes finish it
        first: each ends with exactly one terminal line, one DSN in all."""
        slow_dot = self.w.sink("127.0.1.95", config={"delay_ms": {"dot": 1500}})
        rcpts = ["a%d@s.test" % i for i in range(4)] + ["slow-x@t.test"]
        submit(self.d.routing_socket, "author@src.test", rcpts, body("news"))
        mid = [r["id"] for r in self.records("Reception")][0]
        st, res = self.d.admin("POST", "/v1/bounce",
                               {"sender": "author@src.test", "action": "bounce"}, timeout=60)
        self.assertEqual(st, 200, res)
        self.assertEqual(res["messages"], 1)
        world.wait_until(lambda: all(self.terminal_counts()[a] >= 1 for a in rcpts),
                         timeout=20, what="terminal lines")
        counts = self.terminal_counts()
        for a in rcpts:
            self.assertEqual(counts[a], 1, a)
        delivered = {r["recipient"] for r in self.records("Delivery")}
        bounced = {r["recipient"] for r in self.records("Bounce")}
        self.assertEqual(delivered | bounced, set(rcpts))
        self.assertEqual(res["recipients"], len(bounced))
        self.assertEqual(len(slow_dot.transactions(status="delivered")) > 0,
                         bool(delivered))
        self.assertEqual(len(self.dsn_events("failed")), 1)
        self.assertEqual(self.dsn_events("failed")[0]["recipients"], len(bounced))
        st, _ = self.d.admin("GET", "/v1/messages/" + mid)
        self.assertEqual(st, 404)

    def test_cli_bounce_by_domain(self):
        if not os.path.exists(CTL):
            self.skipTest("mxbatchctl not built")
        submit(self.d.routing_socket, "author@src.test", ["slow1@t.test", "ok5@n.test"],
               body("a"))
        submit(self.d.routing_socket, "author2@src.test", ["slow2@t.test"], body("b"))
        submit(self.d.routing_socket, "author3@src.test", ["slow3@t.test", "slow4@t.test"],
               body("c"))
        world.wait_until(lambda: all(self.deferrals("slow%d@t.test" % i) == 1
                                     for i in range(1, 5)), timeout=20, what="deferrals")
        p = subprocess.run([CTL, "-c", self.d.config_path, "bounce", "--domain", "t.test",
                            "--sender", "author@src.test"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, (p.stdout, p.stderr))
        self.assertIn("bounced: 1 recipients of 1 messages", p.stdout)
        p = subprocess.run([CTL, "-c", self.d.config_path, "bounce", "--domain", "t.test"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, (p.stdout, p.stderr))
        self.assertIn("bounced: 3 recipients of 2 messages", p.stdout)
        msgs = self.dsns_at_home(3, "three DSNs")
        self.assertEqual(sorted(str(m["To"]).strip("<>") for m in msgs),
                         ["author2@src.test", "author3@src.test", "author@src.test"])
        counts = self.terminal_counts()
        for a in ["slow%d@t.test" % i for i in range(1, 5)] + ["ok5@n.test"]:
            self.assertEqual(counts[a], 1, a)

    def test_cli_delete_with_bounce(self):
        if not os.path.exists(CTL):
            self.skipTest("mxbatchctl not built")
        submit(self.d.routing_socket, "author@src.test", ["slow6@t.test", "slow7@t.test"],
               body("d"), rcpt_options=["NOTIFY=NEVER"])
        world.wait_until(lambda: self.deferrals("slow7@t.test") == 1, timeout=20,
                         what="deferral")
        mid = self.message_id("slow7@t.test")
        p = subprocess.run([CTL, "-c", self.d.config_path, "delete", "--bounce", mid],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, (p.stdout, p.stderr))
        self.assertIn("bounce: %s (2 recipients)" % mid, p.stdout)
        # NOTIFY=NEVER: bounced, logged, no DSN
        self.assertEqual([b["recipient"] for b in self.records("Bounce")],
                         ["slow6@t.test", "slow7@t.test"])
        self.assertEqual(self.dsn_events(), [])
        p = subprocess.run([CTL, "-c", self.d.config_path, "delete", "--bounce", mid],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 1, (p.stdout, p.stderr))


if __name__ == "__main__":
    unittest.main()
