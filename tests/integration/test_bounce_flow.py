"""Bounces end to end: classification, one DSN per message per round,
NOTIFY, the null sender, and exactly one terminal line per recipient.

Real daemon, dnsmasq, and two sinks: the remote MX that refuses some
recipients, and the sender's own MX, which receives the DSNs.
"""
import collections
import email
import smtplib
import email.policy
import time
import unittest

import world
from submit import body, submit


class BounceFlowTest(unittest.TestCase):
    def setUp(self):
        w = self.w = world.World(self)
        w.dns.add_mx("t.test", [(10, "mx.t.test")])
        w.dns.add_a("mx.t.test", "127.0.1.90")
        w.dns.add_mx("src.test", [(10, "mx.src.test")])
        w.dns.add_a("mx.src.test", "127.0.1.91")
        w.dns.start()
        self.remote = w.sink("127.0.1.90", config={"rcpt_rules": [
            {"match": "bad", "reply": "550 5.1.1 <x>: Recipient address rejected: User unknown"},
            {"match": "slow", "reply": "451 4.2.0 mailbox temporarily unavailable"}]})
        self.home = w.sink("127.0.1.91", save_bodies=True)
        self.d = w.daemon({"delivery": {"retry_schedule": "1s"},
                           "spool": {"queue_lifetime": "4s"}})

    def dsns(self):
        return [t for t in self.home.transactions(status="delivered") if t["mail_from"] == ""]

    def terminal(self):
        return [r for r in self.d.delivery_records()
                if r["event"] in ("Delivery", "Bounce", "Expiration")]

    def wait_terminal(self, rcpts, timeout=30):
        return world.wait_until(lambda: set(rcpts) <= {r["recipient"] for r in self.terminal()},
                                timeout=timeout, what="terminal records for %s" % rcpts)

    def test_one_dsn_per_round(self):
        good = ["ok%d@t.test" % i for i in range(5)]
        bad = ["bad%d@t.test" % i for i in range(3)]
        slow = ["slow%d@t.test" % i for i in range(2)]
        self.assertEqual(submit(self.d.routing_socket, "author@src.test", good + bad + slow,
                                body("quarterly report")), {})
        self.wait_terminal(good + bad + slow)
        world.wait_until(lambda: len(self.dsns()) >= 2, timeout=20, what="two DSNs")
        time.sleep(1.5)  # nothing more may come
        dsns = self.dsns()
        self.assertEqual(len(dsns), 2, "one DSN for the 550s, one for the expiries")
        receptions = [r for r in self.d.delivery_records() if r["event"] == "Reception"
                      and r["sender"] == "author@src.test"]
        self.assertEqual(len(receptions), 1)
        self.assertEqual(receptions[0]["recipients"], 10)
        self.assertEqual(receptions[0]["listener"], "routing")
        by_rcpt = collections.Counter(r["recipient"] for r in self.terminal())
        for a in good + bad + slow:
            self.assertEqual(by_rcpt[a], 1, a)
        events = {r["recipient"]: r for r in self.terminal()}
        for a in bad:
            self.assertEqual(events[a]["event"], "Bounce")
            self.assertEqual(events[a]["category"], "bad-mailbox")
        for a in slow:
            self.assertEqual(events[a]["event"], "Expiration")
        reported = []
        for t in dsns:
            self.assertEqual([r["to"] for r in t["rcpts"]], ["author@src.test"])
            msg = email.message_from_bytes(self.home.body(t), policy=email.policy.default)
            self.assertEqual(msg.get_content_type(), "multipart/report")
            self.assertEqual(msg.get_param("report-type"), "delivery-status")
            parts = list(msg.iter_parts())
            self.assertEqual(parts[1].get_content_type(), "message/delivery-status")
            status = parts[1].get_payload()
            finals = [str(b.get("Final-Recipient")).split(";")[1].strip()
                      for b in status[1:]]
            reported.append(sorted(finals))
            self.assertIn("quarterly report", self.home.body(t).decode("utf-8", "replace"))
        self.assertIn(sorted(bad), reported)
        self.assertIn(sorted(slow), reported)

    def test_null_sender_gets_no_dsn(self):
        submit(self.d.routing_socket, "", ["bad9@t.test"])
        self.wait_terminal(["bad9@t.test"])
        time.sleep(1.5)
        self.assertEqual(self.dsns(), [])
        self.assertEqual([r["event"] for r in self.terminal()], ["Bounce"])

    def test_notify_never(self):
        submit(self.d.routing_socket, "author@src.test", ["bad7@t.test"],
               rcpt_options=["NOTIFY=NEVER"])
        self.wait_terminal(["bad7@t.test"])
        time.sleep(1.5)
        self.assertEqual(self.dsns(), [])

    def test_hard_bounce_suppresses_the_address(self):
        submit(self.d.routing_socket, "author@src.test", ["bad5@t.test"])
        self.wait_terminal(["bad5@t.test"])
        # the store write of the suppression follows the bounce within a round
        st, res = world.wait_until(
            lambda: (lambda r: r if r[1]["suppressions"] else None)(
                self.d.admin("GET", "/v1/suppressions")), timeout=10, what="suppression")
        entry = res["suppressions"][0]
        self.assertEqual((entry["address"], entry["category"], entry["active"]),
                         ("bad5@t.test", "bad-mailbox", True))
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            submit(self.d.routing_socket, "author@src.test", ["Bad5@t.test"])
        code, text = cm.exception.recipients["Bad5@t.test"]
        self.assertEqual(code, 550)
        self.assertIn(b"5.1.1", text)
        self.assertIn(b"suppressed", text)
        # refused at the door: nothing new queued, one terminal line so far
        self.assertEqual([r["event"] for r in self.terminal()
                          if r["recipient"].lower() == "bad5@t.test"], ["Bounce"])
        st, _ = self.d.admin("DELETE", "/v1/suppressions/bad5%40t.test")
        self.assertEqual(st, 200)
        world.wait_until(lambda: self.d.admin("GET", "/v1/suppressions")[1]["suppressions"] == [],
                         timeout=10, what="suppression removed")
        self.assertEqual(submit(self.d.routing_socket, "author@src.test", ["bad5@t.test"]), {})


if __name__ == "__main__":
    unittest.main()
