"""Adversarial submission, end to end: the classic attacks sent to the
routing tier's Unix socket and to the customers' TCP relay listener
(STARTTLS + AUTH), with delivery running to a recording test MX.

tests/integration/test_smtpd*.py check each refusal of the submission
server and the spool. These tests add the cross-module proof: after the
attack, nothing the attacker smuggled, relayed or injected ever reaches a
remote MX (the sink's log), the good mail does, the daemon did not restart
(same pid) and a fresh client is still served.
"""
import base64
import os
import resource
import smtplib
import socket
import ssl
import threading
import time
import unittest

from world import World, free_port, wait_until
import test_smtpd as base

# crypt(3) hashes of "s3cret-alice" / "s3cret-bob" (as in test_smtpd_tls)
ALICE = "$y$j9T$ILdnZ4NDecDUY/sE7VPya.$dM3HYT7BokrTGGyvptAtXHzQEKW4440wi2riHNEmmt5"
BOB = ("$6$bobsalt$VQv7EzAzopVc.Ap7zHot1lo778.d.9/MWHbnBi/sDFZqoIkqxivWJIxAC2J."
       "8qabqtA2qSF.BwNEcJ54ngA/Y1")
ACCOUNTS = ("alice %s senders=example.com\n"
            "bob %s senders=other.net\n" % (ALICE, BOB))
SMUGGLE = b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@dest.test>\r\n" \
          b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n"
VARIANTS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\r"]


def b64(s):
    return base64.b64encode(s.encode()).decode()


class AdversarialCase(unittest.TestCase):

    def setUp(self):
        w = self.w = World(self)
        w.dns.add_mx("dest.test", [(10, "mx.dest.test")])
        w.dns.add_a("mx.dest.test", "127.0.1.81")
        w.dns.start()
        self.sink = w.sink("127.0.1.81", save_bodies=True)
        self.cert = w.cert(names=("mx.test",), ips=("127.0.0.1",))
        accounts = w.path("accounts")
        with open(accounts, "w") as f:
            f.write(ACCOUNTS)
        self.port = free_port()
        self.d = w.daemon({
            "delivery": {"retry_schedule": "1s"},
            'listen "relay"': {"address": "127.0.0.1:%d" % self.port,
                               "tls_cert": self.cert.cert,
                               "tls_key": self.cert.key, "auth": "required",
                               "accounts": accounts,
                               "command_timeout": "3s"},
        })
        self.pid = self.d.proc.pid
        self.ctx = ssl.create_default_context(cafile=self.cert.ca)
        self.good = 0

    def raw(self, tcp=False):
        r = base.Raw(("127.0.0.1", self.port) if tcp else self.d.routing_socket)
        self.addCleanup(r.close)
        return r

    def tls_client(self, login=None):
        c = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
        self.addCleanup(c.close)
        c.ehlo("customer.test")
        c.starttls(context=self.ctx)
        c.ehlo("customer.test")
        if login:
            c.login(login, "s3cret-" + login)
        return c

    def served(self):
        """A fresh client on each door gets its message to the MX."""
        self.good += 1
        tag = "good%d" % self.good
        self.assertEqual(self.d.submit("ok@src.test", [tag + "u@dest.test"],
                                       base.BODY), {})
        c = self.tls_client("alice")
        self.assertEqual(c.sendmail("a@example.com", [tag + "t@dest.test"],
                                    base.BODY), {})
        c.quit()
        wait_until(lambda: {tag + "u@dest.test", tag + "t@dest.test"} <=
                   set(self.sink.delivered()), timeout=20,
                   what="the fresh clients' mail at the MX")
        self.assertEqual(self.d.proc.pid, self.pid)
        self.assertIsNone(self.d.proc.poll(), "the daemon died")

    def assert_nothing_bad_arrived(self):
        for t in self.sink.transactions():
            self.assertNotIn("attacker", t["mail_from"], t)
            for rc in t["rcpts"]:
                self.assertNotIn("victim", rc["to"], t)
            if t.get("body_file"):
                with open(t["body_file"], "rb") as f:
                    body = f.read()
                self.assertNotIn(b"smuggled", body)
                self.assertNotIn(b"X-Injected", body)


class TestSmuggling(AdversarialCase):

    def test_end_of_data_variants_on_both_doors(self):
        for tcp in (False, True):
            for v in VARIANTS:
                if tcp:
                    c = self.tls_client("alice")
                    c.mail("a@example.com")
                    c.rcpt("first@dest.test")
                    code, _ = c.docmd("DATA")
                    self.assertEqual(code, 354)
                    c.send(b"Subject: first\r\n\r\nfirst" + v + SMUGGLE)
                    code, text = c.getreply()
                    c.close()
                else:
                    r = self.raw()
                    r.cmd("EHLO attacker.test")
                    r.cmd("MAIL FROM:<a@src.test>")
                    r.cmd("RCPT TO:<first@dest.test>")
                    self.assertEqual(r.cmd("DATA")[0], 354)
                    r.send(b"Subject: first\r\n\r\nfirst" + v + SMUGGLE)
                    code, text, _ = r.reply()
                # one reply for the whole DATA, a refusal (bare CR/LF)
                self.assertEqual(code, 554, (v, tcp, text))
        self.served()
        self.assert_nothing_bad_arrived()
        self.assertNotIn("first@dest.test", self.sink.delivered())

    def test_bare_cr_inside_a_command_is_one_refused_line(self):
        r = self.raw()
        self.assertEqual(r.cmd("EHLO a")[0], 250)
        r.send(b"NOOP\rMAIL FROM:<evil@attacker.test>\r\n")
        self.assertEqual(r.reply()[0], 500)
        self.assertEqual(r.cmd("RCPT TO:<victim@dest.test>")[0], 503)
        self.served()
        self.assert_nothing_bad_arrived()

    def test_bare_lf_inside_a_command_is_one_refused_line(self):
        """Regression: "NOOP<LF>MAIL FROM:<evil><CRLF>" is one refused line,
        never a refused NOOP followed by a MAIL of its own (two replies for
        one CRLF line would let a front end and mxbatchd disagree on the
        commands: smuggling)."""
        r = self.raw()
        self.assertEqual(r.cmd("EHLO a")[0], 250)
        r.send(b"NOOP\nMAIL FROM:<evil@attacker.test>\r\n")
        self.assertEqual(r.reply()[0], 500)
        self.assertEqual(r.cmd("RCPT TO:<victim@dest.test>")[0], 503)


class TestHostileInput(AdversarialCase):

    def test_commands_before_the_greeting_on_tcp(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"EHLO x\r\nMAIL FROM:<evil@attacker.test>\r\n"
                  b"RCPT TO:<victim@dest.test>\r\nDATA\r\n" + SMUGGLE)
        time.sleep(0.5)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        # whatever the server answers, no unauthenticated mail gets queued
        self.assertNotIn(b"\r\n354", data)
        self.served()
        self.assert_nothing_bad_arrived()

    def test_megabyte_lines_and_nul_bytes(self):
        r = self.raw()
        r.send(b"MAIL FROM:<" + b"a" * (1 << 20) + b"@src.test>\r\n")
        self.assertEqual(r.reply()[0], 500)
        # a 1 MB body line is accepted and leaves folded to <= 998 octets
        c = self.d.smtp()
        c.ehlo("x")
        long_body = b"Subject: long\r\n\r\n" + b"L" * (1 << 20) + b"\r\nend\r\n"
        self.assertEqual(c.sendmail("a@src.test", ["long@dest.test"], long_body), {})
        c.quit()
        t = self.sink.wait_transactions(1, status="delivered")[0]
        body = self.sink.body(t)
        self.assertEqual(max(len(l) for l in body.split(b"\r\n")), 998)
        self.assertNotIn(b"\n", body.replace(b"\r\n", b""))
        self.assertEqual(body.replace(b"\r\n ", b"").count(b"L"), 1 << 20)
        # NUL in data: refused, nothing delivered
        r = self.raw()
        r.cmd("EHLO x")
        r.cmd("MAIL FROM:<a@src.test>")
        r.cmd("RCPT TO:<nul@dest.test>")
        r.cmd("DATA")
        r.send(b"Subject: nul\r\n\r\na\0b\r\n.\r\n")
        self.assertEqual(r.reply()[0], 554)
        self.served()
        self.assertNotIn("nul@dest.test", self.sink.delivered())

    def test_thousands_of_recipients(self):
        rcpts = ["m%04d@dest.test" % i for i in range(3000)]
        self.assertEqual(self.d.submit("a@src.test", rcpts, base.BODY), {})
        wait_until(lambda: len(self.sink.delivered()) >= 3000, timeout=60,
                   what="3000 recipients at the MX")
        self.assertEqual(sorted(self.sink.delivered()), rcpts)
        self.assertTrue(all(len(t["rcpts"]) <= 100
                            for t in self.sink.transactions()))
        # the TCP listener caps a message at 1000 recipients: 452 beyond
        c = self.tls_client("alice")
        c.mail("a@example.com")
        codes = [c.rcpt("t%04d@dest.test" % i)[0] for i in range(1005)]
        self.assertEqual(codes[:1000], [250] * 1000)
        self.assertEqual(set(codes[1000:]), {452})
        c.rset()
        self.served()

    def test_dsn_parameters_and_quoted_local_parts_carry_no_controls(self):
        r = self.raw()
        r.cmd("EHLO x")
        for cmd in ("MAIL FROM:<a@src.test> ENVID=x+0D+0AX-Injected:+20yes",
                    "MAIL FROM:<a@src.test> ENVID=x+00y",
                    "MAIL FROM:<\"a\\\x01b\"@src.test>"):
            self.assertIn(r.cmd(cmd)[0], (501, 553, 555), cmd)
        self.assertEqual(r.cmd("MAIL FROM:<a@src.test> RET=HDRS")[0], 250)
        for cmd in ("RCPT TO:<victim@dest.test> ORCPT=rfc822;v+0D+0AX-Injected:+20y",
                    "RCPT TO:<victim@dest.test> ORCPT=rfc822;v+00y",
                    "RCPT TO:<\"v\\\x7f\"@dest.test>",
                    "RCPT TO:<victim@dest.test> NOTIFY=NEVER,SUCCESS"):
            self.assertIn(r.cmd(cmd)[0], (500, 501, 553, 555), cmd)
        self.assertEqual(r.cmd("RSET")[0], 250)
        self.served()
        self.assert_nothing_bad_arrived()


class TestAuthAndRelay(AdversarialCase):

    def test_auth_before_tls_and_relay_without_auth(self):
        r = self.raw(tcp=True)
        r.cmd("EHLO attacker.test")
        self.assertIn(r.cmd("AUTH PLAIN " + b64("\0alice\0s3cret-alice"))[0],
                      (503, 530, 538))
        self.assertEqual(r.cmd("MAIL FROM:<a@example.com>")[0], 530)
        c = self.tls_client()
        self.assertEqual(c.mail("a@example.com")[0], 530)
        self.assertEqual(c.rcpt("victim@dest.test")[0], 503)
        self.served()
        self.assert_nothing_bad_arrived()

    def test_brute_force_is_throttled_even_with_the_right_password(self):
        for i in range(6):
            c = self.tls_client()
            code, _ = c.docmd("AUTH", "PLAIN " + b64("\0alice\0guess%d" % i))
            self.assertIn(code, (535, 454))
            c.close()
        c = self.tls_client()
        code, text = c.docmd("AUTH", "PLAIN " + b64("\0alice\0s3cret-alice"))
        self.assertEqual(code, 454, text)
        self.assertEqual(c.mail("a@example.com")[0], 530)
        self.assertNotIn("guess", self.d.log_text())
        self.assertEqual(self.d.submit("ok@src.test", ["stillu@dest.test"],
                                       base.BODY), {})
        wait_until(lambda: "stillu@dest.test" in self.sink.delivered(), timeout=20)

    def test_customer_cannot_send_as_another_customer(self):
        c = self.tls_client("alice")
        code, text = c.mail("ceo@other.net")          # bob's domain
        self.assertEqual((code, text[:5]), (553, b"5.7.1"))
        self.assertEqual(c.rcpt("victim@dest.test")[0], 503)
        code, text = c.mail("x@EXAMPLE.COM.other.net")
        self.assertEqual(code, 553)
        c.rset()
        self.served()
        self.assert_nothing_bad_arrived()

    def test_starttls_with_pipelined_plaintext_delivers_nothing(self):
        r = self.raw(tcp=True)
        r.cmd("EHLO attacker.test")
        r.send(b"STARTTLS\r\nAUTH PLAIN " + b64("\0alice\0s3cret-alice").encode() +
               b"\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<victim@dest.test>\r\n"
               b"DATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n")
        self.assertEqual(r.reply()[0], 220)
        r.s = self.ctx.wrap_socket(r.s, server_hostname="127.0.0.1")
        self.assertEqual(r.cmd("EHLO attacker.test")[0], 250)
        self.assertEqual(r.cmd("MAIL FROM:<a@example.com>")[0], 530)  # not logged in
        self.served()
        self.assert_nothing_bad_arrived()


class TestConnections(AdversarialCase):

    def test_slowloris_crowd_does_not_block_fresh_clients(self):
        socks = []
        for _ in range(30):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            socks.append(s)
            self.addCleanup(s.close)
        for s in socks:  # wait for the greeting (an early talker is refused at once)
            greeting = b""
            while not greeting.endswith(b"\r\n"):
                greeting += s.recv(512)
            self.assertTrue(greeting.startswith(b"220 "), greeting)
        stop = threading.Event()

        def drip():
            while not stop.is_set():
                for s in socks:
                    try:
                        s.send(b"E")
                    except OSError:
                        pass
                time.sleep(0.5)
        t = threading.Thread(target=drip, daemon=True)
        t.start()
        try:
            self.served()      # while the crowd drips
            time.sleep(4)      # command_timeout = 3 s
            closed = 0
            for s in socks:
                s.settimeout(2)
                try:
                    data = s.recv(65536)
                    while data and not data.endswith(b"\r\n") or (
                            data and b"421" not in data):
                        more = s.recv(65536)
                        if not more:
                            break
                        data += more
                    closed += b"421" in data
                except OSError:
                    pass
            self.assertEqual(closed, len(socks))
        finally:
            stop.set()
            t.join()

    def test_two_thousand_idle_connections(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 4500:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))
            except (ValueError, OSError):
                self.skipTest("cannot raise the open-file limit")
        socks, greeted, refused = [], 0, 0
        try:
            for _ in range(2000):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                socks.append(s)
                s.settimeout(10)
                for _ in range(500):   # the listen backlog may be full
                    try:
                        s.connect(self.d.routing_socket)
                        break
                    except BlockingIOError:
                        time.sleep(0.01)
            for s in socks:
                try:
                    data = s.recv(512)
                except OSError:
                    data = b""
                if data.startswith(b"220"):
                    greeted += 1
                else:
                    refused += 1
            # the listener's cap (max_connections = 1000) holds, politely
            self.assertEqual(greeted, 1000)
            self.assertEqual(refused, 1000)
            fds = len(os.listdir("/proc/%d/fd" % self.d.proc.pid))
            self.assertLess(fds, 1200)
        finally:
            for s in socks:
                s.close()
        wait_until(lambda: len(os.listdir("/proc/%d/fd" % self.d.proc.pid)) < 100,
                   timeout=20, what="the sessions' fds released")
        self.served()


if __name__ == "__main__":
    unittest.main()
