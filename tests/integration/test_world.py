"""Tests of the test world itself: dnsmasq zones, the MX sink, certificates.

If these pass, a failing feature test is not the test world's fault. Each
record kind DnsWorld generates is queried with the stdlib DNS client; the
sink is driven by real clients (smtplib, swaks) and each fault mode checked
from both sides (what the client saw, what the sink logged).
"""
import hashlib
import os
import smtplib
import ssl
import subprocess
import time
import unittest

import world


class DnsWorldTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = world.World(cls)
        d = cls.w.dns
        d.add_mx("ex.test", [(10, "mx1.ex.test"), (20, "mx2.ex.test")])
        d.add_a("mx1.ex.test", ["127.0.1.5", "127.0.1.6"], ttl=60)
        d.add_aaaa("mx1.ex.test", "::1", ttl=61)
        d.add_null_mx("null.test")
        d.add_nxdomain_zone("nx.test")
        d.add_servfail("sf.test")
        d.add_timeout("slow.test")
        d.add_txt("2.0.0.127.zen.test", ["listed", "see https://zen.test/"])
        d.add_a("2.0.0.127.zen.test", "127.0.0.2")
        d.add_cname("www.ex.test", "mx1.ex.test")
        d.start()

    def q(self, name, qtype, timeout=2.0):
        a = self.w.dns.query(name, qtype, timeout=timeout)
        self.assertIsNotNone(a, "no answer for %s %s" % (name, qtype))
        return a

    def test_mx_with_preferences(self):
        a = self.q("ex.test", "MX")
        self.assertEqual(a.rcode, "NOERROR")
        self.assertEqual(sorted(a.values("MX")),
                         [(10, "mx1.ex.test"), (20, "mx2.ex.test")])
        self.assertEqual({r[2] for r in a.records}, {300})

    def test_a_and_aaaa_with_ttl(self):
        a = self.q("mx1.ex.test", "A")
        self.assertEqual(sorted(a.values("A")), ["127.0.1.5", "127.0.1.6"])
        self.assertEqual({r[2] for r in a.records}, {60})
        a6 = self.q("mx1.ex.test", "AAAA")
        self.assertEqual(a6.values("AAAA"), ["::1"])
        self.assertEqual(a6.records[0][2], 61)

    def test_nodata_for_other_types(self):
        a = self.q("ex.test", "A")
        self.assertEqual((a.rcode, a.records), ("NOERROR", []))
        a = self.q("2.0.0.127.zen.test", "AAAA")
        self.assertEqual((a.rcode, a.records), ("NOERROR", []))
        # an MX target with no address record of its own does not exist
        self.assertEqual(self.q("mx2.ex.test", "AAAA").rcode, "NXDOMAIN")

    def test_null_mx(self):
        a = self.q("null.test", "MX")
        self.assertEqual(a.values("MX"), [(0, "")])

    def test_nxdomain(self):
        for name in ("nx.test", "a.b.nx.test", "unknown.example"):
            self.assertEqual(self.q(name, "MX").rcode, "NXDOMAIN", name)

    def test_servfail(self):
        self.assertEqual(self.q("sf.test", "MX").rcode, "SERVFAIL")
        self.assertEqual(self.q("mx.sf.test", "A").rcode, "SERVFAIL")

    def test_timeout(self):
        self.assertIsNone(self.w.dns.query("slow.test", "MX", timeout=0.5))

    def test_txt_and_dnsbl_a(self):
        a = self.q("2.0.0.127.zen.test", "TXT")
        self.assertEqual(a.values("TXT"), [["listed", "see https://zen.test/"]])
        self.assertEqual(self.q("2.0.0.127.zen.test", "A").values("A"),
                         ["127.0.0.2"])

    def test_cname(self):
        a = self.q("www.ex.test", "A")
        self.assertEqual(a.values("CNAME"), ["mx1.ex.test"])
        self.assertIn("127.0.1.5", a.values("A"))

    def test_query_count(self):
        before = self.w.dns.query_count("count.ex.test", "A")
        for _ in range(3):
            self.q("count.ex.test", "A")
        self.q("count.ex.test", "MX")
        world.wait_until(
            lambda: self.w.dns.query_count("count.ex.test") == before + 4,
            timeout=5, what="query log")
        self.assertEqual(self.w.dns.query_count("count.ex.test", "A"),
                         before + 3)


class DnsReloadTest(unittest.TestCase):
    def test_fix_servfail_by_reload(self):
        w = world.World(self)
        w.dns.add_servfail("fixme.test").add_null_mx("gone.test").start()
        port = w.dns.port
        self.assertEqual(w.dns.query("fixme.test", "MX").rcode, "SERVFAIL")
        w.dns.remove("fixme.test").add_mx("fixme.test", [(5, "mx.fixme.test")])
        w.dns.remove("gone.test")
        w.dns.start()  # already running: same as reload()
        self.assertEqual(w.dns.port, port)
        self.assertEqual(w.dns.query("fixme.test", "MX").values("MX"),
                         [(5, "mx.fixme.test")])
        self.assertEqual(w.dns.query("gone.test", "MX").rcode, "NXDOMAIN")
        self.assertEqual(w.dns.query_count("fixme.test", "MX"), 2)

    def test_bad_name_refused(self):
        d = world.DnsWorld(world.tempfile.mkdtemp(prefix="mxb-dnsbad-"))
        self.addCleanup(world.shutil.rmtree, d.dir, True)
        with self.assertRaises(ValueError):
            d.add_mx("bad,name.test", [(1, "x.test")])
        with self.assertRaises(OSError):
            d.add_a("x.test", "999.1.1.1")


def sha256(b):
    return hashlib.sha256(b).hexdigest()


class SinkSessionTest(unittest.TestCase):
    """Real clients against the sink; what they saw vs what it logged."""

    def setUp(self):
        self.w = world.World(self)

    def test_smtplib_plain(self):
        sink = self.w.sink(["127.0.1.5", "127.0.1.6"])
        body = "Subject: hi\r\n\r\n.leading dot\r\nline two\r\n"
        with smtplib.SMTP(*sink.addr(1), local_hostname="client.test") as c:
            refused = c.sendmail("from@a.test", ["x@b.test", "y@b.test"],
                                 body)
        self.assertEqual(refused, {})
        t, = sink.wait_transactions(1)
        self.assertEqual(t["listen"], "127.0.1.6:%d" % sink.port)
        self.assertEqual((t["peer"], t["helo"], t["helo_cmd"], t["tls"]),
                         ("127.0.0.1", "client.test", "EHLO", False))
        self.assertEqual(t["mail_from"], "from@a.test")
        self.assertEqual([r["to"] for r in t["rcpts"]],
                         ["x@b.test", "y@b.test"])
        self.assertTrue(all(r["reply"].startswith("250") for r in t["rcpts"]))
        self.assertEqual((t["method"], t["status"], t["txn"]),
                         ("DATA", "delivered", 1))
        self.assertEqual(t["body_size"], len(body))
        self.assertEqual(t["sha256"], sha256(body.encode()))
        self.assertTrue(t["final_reply"].startswith("250 2.0.0"))
        c, = sink.wait_connections(1)
        self.assertEqual((c["close"], c["transactions"], c["messages"],
                          c["conn"]), ("quit", 1, 1, t["conn"]))
        self.assertEqual(c["peer_port"], t["peer_port"])
        self.assertEqual(sink.transactions("127.0.1.5"), [])

    def test_per_peer_overrides(self):
        """"peers": one client address gets other replies than the rest,
        on top of the listen-address overrides; a reload changes them."""
        listed = "550 5.7.1 client [127.0.0.2] listed at zen.spamhaus.org"
        sink = self.w.sink("127.0.1.8", config={
            "listen": {"127.0.1.8": {"hostname": "per-listen.test"}},
            "peers": {"127.0.0.2": {"rcpt_rules": [{"regex": ".", "reply": listed}]}}})

        def send(src):
            with smtplib.SMTP(*sink.addr(), source_address=(src, 0)) as c:
                name = c.ehlo("c.test")[1].decode().split("\n")[0]
                try:
                    c.sendmail("s@a.test", ["r@b.test"], "x\r\n")
                    return name, "250"
                except smtplib.SMTPRecipientsRefused as e:
                    code, text = e.recipients["r@b.test"]
                    return name, "%d %s" % (code, text.decode())

        self.assertEqual(send("127.0.0.2"), ("per-listen.test", listed))
        self.assertEqual(send("127.0.0.3"), ("per-listen.test", "250"))
        self.assertEqual(send("127.0.0.1"), ("per-listen.test", "250"))
        self.assertEqual({c["peer"] for c in sink.connections()},
                         {"127.0.0.1", "127.0.0.2", "127.0.0.3"})
        sink.reconfigure({"peers": {"127.0.0.3": {"replies": {"mail": "421 4.7.0 go away"}}}})
        self.assertEqual(send("127.0.0.2"), ("mxsink.test", "250"))
        with self.assertRaises(smtplib.SMTPSenderRefused):
            send("127.0.0.3")
        with self.assertRaises(ValueError):  # a bad peers entry is refused
            sink.reconfigure({"peers": {"127.0.0.3": 5}})

    def test_pipelined_data_then_bdat(self):
        sink = self.w.sink("127.0.1.7", save_bodies=True)
        c = world.RawSmtp(sink.addr())
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.cmd("EHLO pipe.test")
        self.assertIn("250-PIPELINING", lines)
        self.assertIn("250-CHUNKING", lines)
        c.send("MAIL FROM:<a@x.test> BODY=8BITMIME SIZE=40\r\n"
               "RCPT TO:<r1@y.test> NOTIFY=NEVER\r\nRCPT TO:<r2@y.test>\r\n"
               "DATA\r\n")
        self.assertEqual([c.reply()[0] for _ in range(4)],
                         [250, 250, 250, 354])
        c.send("..a\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        chunk = b"X\r\n.\r\nY"
        c.send(b"MAIL FROM:<>\r\nRCPT TO:<r3@y.test>\r\nBDAT 4\r\n"
               + chunk[:4] + b"BDAT %d LAST\r\n" % (len(chunk) - 4)
               + chunk[4:] + b"QUIT\r\n")
        self.assertEqual([c.reply()[0] for _ in range(5)],
                         [250, 250, 250, 250, 221])
        c.close()
        t1, t2 = sink.wait_transactions(2)
        self.assertEqual(t1["mail_params"], "BODY=8BITMIME SIZE=40")
        self.assertEqual(t1["rcpts"][0]["params"], "NOTIFY=NEVER")
        self.assertEqual(sink.body(t1), b".a\r\n")
        self.assertEqual(t1["sha256"], sha256(b".a\r\n"))
        self.assertEqual((t2["method"], t2["bdat_chunks"], t2["mail_from"]),
                         ("BDAT", 2, ""))
        self.assertEqual(sink.body(t2), chunk)
        self.assertEqual(t2["txn"], 2)
        self.assertEqual(sink.wait_connections(1)[0]["commands"], 10)

    def test_starttls_with_generated_cert(self):
        sink = self.w.sink("127.0.1.8", tls=True, hostname="mx.tls.test",
                           config={"require_tls": True})
        ctx = ssl.create_default_context(cafile=sink.cert.ca)
        with smtplib.SMTP(*sink.addr()) as c:
            c.ehlo("tls.client")
            self.assertTrue(c.has_extn("starttls"))
            self.assertEqual(c.mail("a@x.test")[0], 530)
            c.rset()
            c.starttls(context=ctx)  # verifies name and chain
            c.ehlo("tls.client")
            self.assertFalse(c.has_extn("starttls"))
            c.sendmail("a@x.test", ["b@y.test"], "Subject: tls\r\n\r\nx\r\n")
        recs = sink.wait_transactions(2)
        self.assertEqual((recs[0]["tls"], recs[0]["mail_reply"][:3]),
                         (False, "530"))
        t = recs[1]
        self.assertEqual((t["tls"], t["status"]), (True, "delivered"))
        self.assertTrue(t["tls_version"].startswith("TLSv1."))
        conn, = sink.wait_connections(1)
        self.assertEqual((conn["close"], conn["tls"]), ("quit", True))
        ctx2 = ssl.create_default_context(cafile=sink.cert.ca)
        with smtplib.SMTP("127.0.1.8", sink.port) as c:
            c._host = "wrong.name.test"
            with self.assertRaises(ssl.SSLCertVerificationError):
                c.starttls(context=ctx2)

    def test_concurrency_from_the_log(self):
        sink = self.w.sink(["127.0.1.15", "127.0.1.16"])
        conns = [world.RawSmtp(sink.addr(i % 2)) for i in range(3)]
        for c in conns:
            self.addCleanup(c.close)
            self.assertEqual(c.reply()[0], 220)
        self.assertEqual(sink.open_connections(), 3)
        self.assertEqual(sink.open_connections("127.0.1.15"), 2)
        for c in conns[:2]:
            c.cmd("QUIT")
        sink.wait_connections(2)
        self.assertEqual(sink.open_connections(), 1)
        self.assertEqual(sink.max_concurrent(), 3)
        self.assertEqual(sink.max_concurrent("127.0.1.16"), 1)

    def test_swaks(self):
        sink = self.w.sink("127.0.1.9")
        r = subprocess.run(
            ["swaks", "--server", "127.0.1.9", "--port", str(sink.port),
             "--from", "sw@a.test", "--to", "t1@b.test,t2@b.test",
             "--ehlo", "swaks.test", "--pipeline", "--body", "hello swaks"],
            capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        t, = sink.wait_transactions(1)
        self.assertEqual((t["helo"], t["accepted"], t["status"]),
                         ("swaks.test", 2, "delivered"))
        self.assertIn(b"hello swaks", r.stdout)

    def test_swaks_starttls(self):
        sink = self.w.sink("127.0.1.14", tls=True, hostname="mx.swaks.test")
        r = subprocess.run(
            ["swaks", "--server", "127.0.1.14", "--port", str(sink.port),
             "--from", "sw@a.test", "--to", "t@b.test", "--tls",
             "--tls-verify", "--tls-ca-path", sink.cert.ca],
            capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        t, = sink.wait_transactions(1)
        self.assertEqual((t["tls"], t["status"]), (True, "delivered"))


class SinkRobustnessTest(unittest.TestCase):
    """Bad input gets an error reply and never takes the sink down."""

    def test_garbage_and_long_lines(self):
        w = world.World(self)
        sink = w.sink(["127.0.1.13", "::1"])
        c = world.RawSmtp(sink.addr())
        self.addCleanup(c.close)
        c.reply()
        self.assertEqual(c.cmd("\x00\xff\xfe junk")[0], 500)
        self.assertEqual(c.cmd("MAIL FROM:<>")[0], 503)  # no EHLO yet
        self.assertEqual(c.cmd("HELO x")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:no-brackets")[0], 501)
        self.assertEqual(c.cmd("MAIL FROM:<a@b> SIZE=1")[0], 555)  # HELO
        self.assertEqual(c.cmd("RCPT TO:<a@b>")[0], 503)
        self.assertEqual(c.cmd("DATA")[0], 503)
        self.assertEqual(c.cmd("BDAT x")[0], 501)  # unframeable: closed
        self.assertEqual(c.reply()[0], None)
        c = world.RawSmtp(sink.addr())
        self.addCleanup(c.close)
        c.reply()
        c.send("NOOP " + "x" * 5000)  # no CRLF, over the line limit
        self.assertEqual(c.reply()[0], 500)
        self.assertEqual(c.reply()[0], None)
        c = world.RawSmtp(sink.addr(1))  # IPv6 listener
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        c.send(bytes(range(256)) * 20 + b"\r\nQUIT\r\n")
        codes = []
        while True:
            code = c.reply()[0]
            if code is None:
                break
            codes.append(code)
        self.assertEqual(codes[-1], 221)
        closes = [x["close"] for x in sink.wait_connections(3)]
        self.assertEqual(sorted(closes), ["error", "line_too_long", "quit"])
        self.assertEqual(sink.connections(ip="::1")[0]["close"], "quit")
        self.assertIsNone(sink.proc.poll())


class SinkFaultTest(unittest.TestCase):
    """Each fault mode, one listen address per fault in one mxsink."""

    FAULTS = {
        "127.0.2.1": {"replies": {"greeting": "554 5.7.1 go away"}},
        "127.0.2.2": {"replies": {"mail": "451 4.3.2 try later",
                                  "dot": "550 5.7.1 spam"}},
        "127.0.2.3": {"rcpt_rules": [
            {"match": "nouser", "reply": "550 5.1.1 no such user"},
            {"regex": "^full[0-9]+@", "reply": "452 4.2.2 mailbox full"}],
            "max_rcpts": 3},
        "127.0.2.4": {"one_domain": True},
        "127.0.2.5": {"max_messages": 2},
        "127.0.2.6": {"delay_ms": {"rcpt": 300}},
        "127.0.2.7": {"drop_at": "dot"},
        "127.0.2.8": {"drop_at": "greeting"},
        "127.0.2.9": {"hang_at": "greeting"},
        "127.0.2.10": {"tempfail_every": 3},
        "127.0.2.11": {"ehlo": {"pipelining": False, "size": False,
                                "8bitmime": False, "smtputf8": False,
                                "chunking": False, "dsn": False,
                                "starttls": False,
                                "enhancedstatuscodes": False}},
        "127.0.2.12": {"ehlo": {"size": 100}},
        "127.0.2.13": {"hang_at": "dot"},
        "127.0.2.14": {"tempfail_every": 2, "tempfail_at": "greeting",
                       "tempfail_reply": "421 4.7.0 too many connections"},
    }

    @classmethod
    def setUpClass(cls):
        cls.w = world.World(cls)
        cls.sink = cls.w.sink(list(cls.FAULTS),
                              config={"listen": cls.FAULTS})

    def conn(self, ip, ehlo=True):
        c = world.RawSmtp((ip, self.sink.port), timeout=3)
        self.addCleanup(c.close)
        if ehlo:
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO f.test")[0], 250)
        return c

    def send_msg(self, c, rcpts=("r@d.test",), body="x\r\n"):
        """MAIL, RCPTs, DATA, body; the list of reply codes."""
        codes = [c.cmd("MAIL FROM:<s@f.test>")[0]]
        codes += [c.cmd("RCPT TO:<%s>" % r)[0] for r in rcpts]
        code = c.cmd("DATA")[0]
        codes.append(code)
        if code == 354:
            c.send(body + ".\r\n")
            codes.append(c.reply()[0])
        return codes

    def test_greeting_reply(self):
        c = self.conn("127.0.2.1", ehlo=False)
        self.assertEqual(c.reply(), (554, ["554 5.7.1 go away"]))

    def test_phase_replies(self):
        c = self.conn("127.0.2.2")
        self.assertEqual(c.cmd("MAIL FROM:<a@b.test>")[0], 451)
        t = self.sink.wait_transactions(1, ip="127.0.2.2")[0]
        self.assertEqual((t["mail_reply"], t["status"]),
                         ("451 4.3.2 try later", "rejected"))

    def test_dot_reply(self):
        w = world.World(self)  # own sink: MAIL always fails on 127.0.2.2
        s = w.sink("127.0.2.2", config={"replies": {"dot": "550 5.7.1 spam"}})
        c = world.RawSmtp(s.addr())
        self.addCleanup(c.close)
        c.reply()
        c.cmd("EHLO f.test")
        self.assertEqual(self.send_msg(c), [250, 250, 354, 550])
        t, = s.wait_transactions(1)
        self.assertEqual((t["final_reply"], t["status"]),
                         ("550 5.7.1 spam", "rejected"))

    def test_rcpt_rules_and_max_rcpts(self):
        c = self.conn("127.0.2.3")
        rc = ["a@d.test", "nouser@d.test", "full12@d.test", "b@d.test",
              "c@d.test", "e@d.test"]
        self.assertEqual(self.send_msg(c, rc),
                         [250, 250, 550, 452, 250, 250, 452, 354, 250])
        t, = self.sink.wait_transactions(1, ip="127.0.2.3")
        self.assertEqual(t["rcpts"][5]["reply"],
                         "452 4.5.3 Too many recipients")
        self.assertEqual(t["accepted"], 3)

    def test_one_domain(self):
        c = self.conn("127.0.2.4")
        codes = self.send_msg(c, ["a@one.test", "b@two.test", "c@ONE.test"])
        self.assertEqual(codes, [250, 250, 451, 250, 354, 250])
        t, = self.sink.wait_transactions(1, ip="127.0.2.4")
        self.assertEqual(t["rcpts"][1]["reply"],
                         "451 4.3.0 Multiple destination domains per "
                         "transaction is unsupported.  Please try again.")

    def test_max_messages_per_connection(self):
        c = self.conn("127.0.2.5")
        self.assertEqual(self.send_msg(c)[-1], 250)
        self.assertEqual(self.send_msg(c)[-1], 250)
        code, lines = c.cmd("MAIL FROM:<s@f.test>")
        self.assertEqual(code, 421)
        self.assertEqual(c.reply()[0], None)  # and the connection is closed
        conn, = self.sink.wait_connections(1, ip="127.0.2.5")
        self.assertEqual((conn["close"], conn["messages"]), ("421", 2))

    def test_slow_replies(self):
        c = self.conn("127.0.2.6")
        c.cmd("MAIL FROM:<s@f.test>")
        t0 = time.monotonic()
        self.assertEqual(c.cmd("RCPT TO:<r@d.test>")[0], 250)
        self.assertGreaterEqual(time.monotonic() - t0, 0.29)

    def test_drop_after_dot(self):
        c = self.conn("127.0.2.7")
        self.assertEqual(self.send_msg(c), [250, 250, 354, None])
        t, = self.sink.wait_transactions(1, ip="127.0.2.7")
        self.assertEqual((t["status"], t["final_reply"]), ("dropped", None))
        self.assertEqual(t["sha256"], sha256(b"x\r\n"))
        conn, = self.sink.wait_connections(1, ip="127.0.2.7")
        self.assertEqual(conn["close"], "drop")

    def test_drop_at_greeting(self):
        c = self.conn("127.0.2.8", ehlo=False)
        self.assertEqual(c.reply(), (None, []))

    def test_hang(self):
        c = self.conn("127.0.2.9", ehlo=False)
        self.assertEqual(c.reply(timeout=0.5)[0], "timeout")
        c.close()
        conn, = self.sink.wait_connections(1, ip="127.0.2.9")
        self.assertEqual(conn["close"], "peer")
        c = self.conn("127.0.2.13")
        c.cmd("MAIL FROM:<s@f.test>")
        c.cmd("RCPT TO:<r@d.test>")
        c.cmd("DATA")
        c.send("x\r\n.\r\n")
        self.assertEqual(c.reply(timeout=0.5)[0], "timeout")
        self.assertEqual(c.cmd("NOOP")[0], "timeout")  # hung for good
        t, = self.sink.wait_transactions(1, ip="127.0.2.13")
        self.assertEqual(t["status"], "hung")

    def test_tempfail_every_third_message(self):
        c = self.conn("127.0.2.10")
        self.assertEqual(self.send_msg(c)[-1], 250)
        self.assertEqual(self.send_msg(c)[-1], 250)
        self.assertEqual(self.send_msg(c)[-1], 421)
        self.assertEqual(c.reply()[0], None)
        c = self.conn("127.0.2.10")
        self.assertEqual(self.send_msg(c)[-1], 250)
        st = [t["status"] for t in self.sink.wait_transactions(
            4, ip="127.0.2.10")]
        self.assertEqual(st, ["delivered", "delivered", "rejected",
                              "delivered"])

    def test_tempfail_every_second_connection(self):
        codes = []
        for _ in range(4):
            c = self.conn("127.0.2.14", ehlo=False)
            codes.append(c.reply()[0])
            if codes[-1] == 421:
                self.assertEqual(c.reply()[0], None)
        self.assertEqual(codes, [220, 421, 220, 421])

    def test_extensions_off_and_strict_params(self):
        c = self.conn("127.0.2.11", ehlo=False)
        c.reply()
        code, lines = c.cmd("EHLO f.test")
        self.assertEqual((code, lines), (250, ["250 mxsink.test"]))
        self.assertEqual(c.cmd("MAIL FROM:<a@b.test> SIZE=10")[0], 555)
        self.assertEqual(c.cmd("MAIL FROM:<a@b.test>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<a@b.test> NOTIFY=NEVER")[0], 555)
        self.assertEqual(c.cmd("RCPT TO:<a@b.test>")[0], 250)
        c.send("BDAT 3 LAST\r\nabc")
        self.assertEqual(c.reply()[0], 502)

    def test_size_limit(self):
        c = self.conn("127.0.2.12")
        self.assertEqual(c.cmd("MAIL FROM:<a@b.test> SIZE=101")[0], 552)
        self.assertEqual(self.send_msg(c, body="y" * 120 + "\r\n")[-1], 552)


class SinkReconfigureTest(unittest.TestCase):
    def test_reconfigure_and_bad_config(self):
        w = world.World(self)
        sink = w.sink("127.0.1.10")
        with smtplib.SMTP(*sink.addr()) as c:
            self.assertEqual(c.ehlo()[0], 250)
        sink.reconfigure({"replies": {"ehlo": "421 4.3.2 shutting down"}})
        with smtplib.SMTP(*sink.addr()) as c:
            self.assertEqual(c.ehlo()[0], 421)
        with self.assertRaises(ValueError) as cm:
            sink.reconfigure({"max_rcpt": 1})
        self.assertIn('unknown key "max_rcpt"', str(cm.exception))
        with smtplib.SMTP(*sink.addr()) as c:  # the old config still holds
            self.assertEqual(c.ehlo()[0], 421)
        self.assertEqual(sink.stop(), 0)
        with self.assertRaises(OSError):  # a dead MX refuses connections
            smtplib.SMTP(*sink.addr(), timeout=2)
        sink.start()  # back, same port, with the last accepted config
        with smtplib.SMTP(*sink.addr()) as c:
            self.assertEqual(c.ehlo()[0], 421)
        sink.reconfigure({})
        with smtplib.SMTP(*sink.addr()) as c:
            self.assertEqual(c.ehlo()[0], 250)
        self.assertEqual(len(sink.connections()), 5)

    def test_bad_startup_config_is_refused(self):
        w = world.World(self)
        with self.assertRaises(RuntimeError) as cm:
            w.sink("127.0.1.11", config={"drop_at": "nowhere"})
        self.assertIn("drop_at", str(cm.exception))


@unittest.skipUnless(os.path.exists(os.path.join(world.BUILD_DIR, "mxbatchd")),
                     "mxbatchd not built")
class DaemonHelperTest(unittest.TestCase):
    def test_daemon_runs_on_the_world_config(self):
        w = world.World(self)
        w.dns.start()
        sink = w.sink("127.0.1.12")
        d = w.daemon({"log": {"level": "debug"}, "server": {"hostname": None}})
        with open(d.config_path) as f:
            text = f.read()
        self.assertIn("servers = %s" % w.dns.server, text)
        self.assertIn("smtp_port = %d" % sink.port, text)
        self.assertIn("level = debug", text)
        self.assertNotIn("hostname", text)
        self.assertTrue(os.path.exists(os.path.join(d.dir, "mxbatchd.pid")))
        with d.smtp() as c:
            self.assertEqual(c.ehlo("helper.test")[0], 250)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
