"""Submission for hosting customers: TCP with STARTTLS (and implicit TLS),
AUTH PLAIN/LOGIN only after TLS, relay only after AUTH, per-account sender
rules and limits, failed-AUTH rate limit, accounts reload on SIGHUP.

A test CA and server certificate are generated per world (world.make_cert);
clients verify the server against that CA.
"""
import base64
import os
import smtplib
import socket
import ssl
import subprocess
import unittest

from world import World, free_port, wait_until
import test_smtpd as base

# crypt(3) hashes of the test passwords (yescrypt and SHA-512 crypt)
ALICE = "$y$j9T$ILdnZ4NDecDUY/sE7VPya.$dM3HYT7BokrTGGyvptAtXHzQEKW4440wi2riHNEmmt5"
CAROL = "$y$j9T$aWtEJTC/MstcIxlHqKBaL1$mCpnhYIc6rLhD2t9LcAUWxuHRzLua3PiBS5pJDU5iX8"
BOB = ("$6$bobsalt$VQv7EzAzopVc.Ap7zHot1lo778.d.9/MWHbnBi/sDFZqoIkqxivWJIxAC2J."
       "8qabqtA2qSF.BwNEcJ54ngA/Y1")
ACCOUNTS = ("# user hash options\n"
            "alice %s tenant=acme senders=example.com,@example.org "
            "messages_per_hour=3 recipients_per_message=4\n"
            "bob %s senders=bob@other.net\n" % (ALICE, BOB))


def b64(s):
    return base64.b64encode(s.encode()).decode()


class TlsCase(unittest.TestCase):

    ACCOUNTS_TEXT = ACCOUNTS

    def setUp(self):
        self.world = World(self)
        self.cert = self.world.cert(names=("mx.test",), ips=("127.0.0.1",))
        self.accounts = self.world.path("accounts")
        with open(self.accounts, "w") as f:
            f.write(self.ACCOUNTS_TEXT)
        self.d = self.start_daemon()
        self.ctx = ssl.create_default_context(cafile=self.cert.ca)

    def start_daemon(self):
        """The daemon with its two TCP listeners. free_port() only finds ports
        free at that moment; until the daemon binds them, a test running in
        parallel may take one ("Address already in use"). Then pick new ports
        and start again, as the harness does for mxsink, dnsmasq and the admin
        port; any other start failure is the test's failure."""
        tls = {"tls_cert": self.cert.cert, "tls_key": self.cert.key,
               "auth": "required", "accounts": self.accounts}
        for attempt in range(5):
            self.port, self.sport = free_port(), free_port()
            d = self.world.daemon({
                "delivery": {"paused": "yes"},
                'listen "relay"': dict(tls, address="127.0.0.1:%d" % self.port),
                'listen "smtps"': dict(tls, address="127.0.0.1:%d" % self.sport,
                                       implicit_tls="yes"),
            }, start=False)
            try:
                return d.start(timeout=base.START_TIMEOUT)
            except RuntimeError:
                if (attempt == 4 or
                        "Address already in use" not in d.log_text()):
                    raise

    def smtp(self):
        c = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
        self.addCleanup(c.close)
        return c

    def tls_smtp(self):
        c = self.smtp()
        c.ehlo("customer.test")
        c.starttls(context=self.ctx)
        c.ehlo("customer.test")
        return c

    def raw(self):
        r = base.Raw(("127.0.0.1", self.port))
        self.addCleanup(r.close)
        return r

    def raw_tls(self):
        """A byte-exact client after EHLO, STARTTLS, EHLO."""
        r = self.raw()
        r.cmd("EHLO customer.test")
        self.assertEqual(r.cmd("STARTTLS")[0], 220)
        r.s = self.ctx.wrap_socket(r.s, server_hostname="127.0.0.1")
        self.assertEqual(r.cmd("EHLO customer.test")[0], 250)
        return r


class TestTlsAuth(TlsCase):

    def test_starttls_then_auth_plain_then_relay(self):
        c = self.smtp()
        c.ehlo("customer.test")
        self.assertIn("starttls", c.esmtp_features)
        self.assertNotIn("auth", c.esmtp_features)   # never before TLS
        c.starttls(context=self.ctx)                 # verifies against the CA
        c.ehlo("customer.test")
        self.assertNotIn("starttls", c.esmtp_features)
        self.assertEqual(c.esmtp_features["auth"].split(), ["PLAIN", "LOGIN"])
        self.assertEqual(c.login("alice", "s3cret-alice")[0], 235)
        self.assertEqual(c.sendmail("news@example.com", ["r1@dest.example", "r2@dest.example"],
                                    base.BODY), {})
        c.quit()
        msgs = base.spool_messages(self.d)
        self.assertEqual(len(msgs), 1)
        m = msgs[0]
        self.assertEqual((m["tenant"], m["listener"], m["sender"]),
                         ("acme", "relay", "news@example.com"))
        head = m["body"].split(b"\r\n\r\n")[0]
        self.assertIn(b"with ESMTPSA id", head)
        self.assertIn(b"(version=TLSv1.3 cipher=", head)
        self.assertIn(b"(authenticated as alice)", head)
        self.assertIn(b"\r\nMessage-ID: <", head)

    def test_auth_login_with_and_without_initial_response(self):
        c = self.tls_smtp()
        c.user, c.password = "bob", "s3cret-bob"
        code, _ = c.auth("LOGIN", c.auth_login)   # smtplib sends the user at once
        self.assertEqual(code, 235)
        c.quit()
        r = self.raw()
        r.cmd("EHLO customer.test")
        self.assertEqual(r.cmd("STARTTLS")[0], 220)
        r.s = self.ctx.wrap_socket(r.s, server_hostname="127.0.0.1")
        r.cmd("EHLO customer.test")
        self.assertEqual(r.cmd("AUTH LOGIN")[:2], (334, "VXNlcm5hbWU6"))
        self.assertEqual(r.cmd(b64("bob"))[:2], (334, "UGFzc3dvcmQ6"))
        self.assertEqual(r.cmd(b64("s3cret-bob"))[:2], (235, "2.7.0 Authentication successful"))
        self.assertEqual(r.cmd("MAIL FROM:<bob@other.net>")[0], 250)
        self.assertEqual(r.cmd("AUTH PLAIN")[0], 503)

    def test_no_auth_or_relay_before_tls(self):
        r = self.raw()
        lines = r.cmd("EHLO customer.test")[2]
        self.assertFalse(any("AUTH" in l for l in lines), lines)
        code, text, _ = r.cmd("AUTH PLAIN " + b64("\0alice\0s3cret-alice"))
        self.assertEqual((code, text[:6]), (538, "5.7.11"))
        code, text, _ = r.cmd("MAIL FROM:<news@example.com>")
        self.assertEqual((code, text[:5]), (530, "5.7.0"))
        code, text, _ = r.cmd("RCPT TO:<x@dest.example>")
        self.assertEqual(code, 503)
        # after TLS but without AUTH: still no relay
        c = self.tls_smtp()
        code, text = c.mail("news@example.com")
        self.assertEqual((code, text[:5]), (530, b"5.7.0"))
        self.assertEqual(base.spool_messages(self.d), [])

    def test_bad_password_then_rate_limited(self):
        c = self.tls_smtp()
        for _ in range(5):
            code, text = c.docmd("AUTH", "PLAIN " + b64("\0alice\0wrong"))
            self.assertEqual((code, text[:5]), (535, b"5.7.8"))
        c2 = self.tls_smtp()    # the limit is per client address, not per session
        code, text = c2.docmd("AUTH", "PLAIN " + b64("\0alice\0s3cret-alice"))
        self.assertEqual((code, text[:5]), (454, b"4.7.0"))
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            c.login("nobody", "s3cret-alice")
        self.assertIn("AUTH failed for user 'alice'", self.d.log_text())
        self.assertNotIn("wrong", self.d.log_text().replace("'alice'", ""))

    def test_sender_rules_and_limits(self):
        c = self.tls_smtp()
        c.login("alice", "s3cret-alice")
        code, text = c.mail("ceo@competitor.example")
        self.assertEqual((code, text[:5]), (553, b"5.7.1"))
        code, text = c.mail("<>")
        self.assertEqual(code, 553)
        self.assertEqual(c.mail("x@sub.example.org")[0], 553)  # exact domains only
        self.assertEqual(c.mail("x@example.org")[0], 250)
        for i in range(4):
            self.assertEqual(c.rcpt("r%d@dest.example" % i)[0], 250)
        code, text = c.rcpt("r4@dest.example")
        self.assertEqual((code, text[:5]), (452, b"4.5.3"))
        self.assertEqual(c.data(base.BODY)[0], 250)
        for _ in range(2):
            self.assertEqual(c.sendmail("y@example.com", ["z@dest.example"], base.BODY), {})
        code, text = c.mail("y@example.com")   # messages_per_hour = 3
        self.assertEqual((code, text[:5]), (451, b"4.7.1"))
        self.assertIn(b"Hourly message limit", text)
        c.quit()
        msgs = base.spool_messages(self.d)
        self.assertEqual(sorted(len(m["rcpts"]) for m in msgs), [1, 1, 4])
        self.assertEqual({m["tenant"] for m in msgs}, {"acme"})

    def test_implicit_tls_listener(self):
        c = smtplib.SMTP_SSL("127.0.0.1", self.sport, context=self.ctx, timeout=30)
        self.addCleanup(c.close)
        c.ehlo("customer.test")
        self.assertIn("auth", c.esmtp_features)
        self.assertNotIn("starttls", c.esmtp_features)
        c.login("bob", "s3cret-bob")
        self.assertEqual(c.sendmail("bob@other.net", ["x@dest.example"], base.BODY), {})
        c.quit()
        msgs = base.spool_messages(self.d)
        self.assertEqual([(m["tenant"], m["listener"]) for m in msgs], [("bob", "smtps")])

    def test_starttls_discards_pipelined_plaintext(self):
        r = self.raw()
        r.cmd("EHLO customer.test")
        r.send(b"STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n")
        self.assertEqual(r.reply()[0], 220)
        self.assertEqual(r.buf, b"")
        r.s = self.ctx.wrap_socket(r.s, server_hostname="127.0.0.1")
        code, _, lines = r.cmd("EHLO customer.test")   # the first reply under TLS
        self.assertEqual(code, 250)
        self.assertIn("250-AUTH PLAIN LOGIN", lines)
        self.assertEqual(r.cmd("RCPT TO:<x@dest.example>")[0], 503)  # no MAIL happened
        self.assertIn("discarding", self.d.log_text())

    def test_swaks_starttls_auth(self):
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(self.port),
                            "--tls", "--auth", "PLAIN", "--auth-user", "alice",
                            "--auth-password", "s3cret-alice", "--from", "s@example.com",
                            "--to", "swaks@dest.example"],
                           capture_output=True, timeout=60)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out)
        self.assertIn("235 2.7.0", out)
        self.assertIn("250 2.0.0 Ok: queued as", out)
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(self.port),
                            "--auth", "PLAIN", "--auth-user", "alice",
                            "--auth-password", "s3cret-alice", "--from", "s@example.com",
                            "--to", "swaks@dest.example"],
                           capture_output=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)  # no AUTH offered without TLS
        self.assertEqual(len(base.spool_messages(self.d)), 1)

    def test_accounts_reload_on_sighup(self):
        c = self.tls_smtp()
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            c.login("carol", "s3cret-carol")
        with open(self.accounts, "a") as f:
            f.write("carol %s senders=*\n" % CAROL)
        self.d.reload()
        self.d.wait_log("listener relay: 3 account(s) loaded")
        c = self.tls_smtp()
        self.assertEqual(c.login("carol", "s3cret-carol")[0], 235)
        with open(self.accounts, "a") as f:
            f.write("broken line without hash\n")
        self.d.reload()
        self.d.wait_log("accounts not reloaded, keeping 3")
        c = self.tls_smtp()
        self.assertEqual(c.login("carol", "s3cret-carol")[0], 235)


# SHA-512 crypt with 3,000,000 rounds: a check takes seconds
SLOW = ("$6$rounds=3000000$slowsalt$nJXWD3X.WkEerHnh2p12NlOgC96i.BLa2qNZYbbE6I9ASw"
        "VergR/i8IB4gYxKIULkO1yTOJru6K.rtx37cnUx0")


class TestSlowPasswordCheck(TlsCase):
    """crypt(3) runs off the event loop: other sessions are served while a
    password is being checked, and the client's pipelined commands wait."""

    ACCOUNTS_TEXT = ACCOUNTS + "slow %s senders=*\n" % SLOW

    def test_other_sessions_are_served_during_a_check(self):
        a = self.raw_tls()
        # AUTH and a pipelined MAIL: MAIL must wait for the AUTH answer
        a.send(("AUTH PLAIN %s\r\nMAIL FROM:<s@example.com>\r\n"
                % b64("\0slow\0slow-pass")).encode())
        b = self.raw()
        self.assertEqual(b.cmd("EHLO other.test")[0], 250)
        self.assertEqual(b.cmd("NOOP")[0], 250)
        # b was answered while a's check still runs: nothing for a yet
        a.s.setblocking(False)
        with self.assertRaises((ssl.SSLWantReadError, BlockingIOError)):
            a.s.recv(1)
        a.s.setblocking(True)
        a.s.settimeout(60)
        self.assertEqual(a.reply()[:2], (235, "2.7.0 Authentication successful"))
        self.assertEqual(a.reply()[0], 250)   # the pipelined MAIL, after AUTH
        # a wrong password is refused after its (slow) check, the same way
        c = self.raw_tls()
        c.s.settimeout(60)
        code, text, _ = c.cmd("AUTH PLAIN " + b64("\0slow\0wrong"))
        self.assertEqual((code, text[:5]), (535, "5.7.8"))
        self.assertIn("AUTH failed for user 'slow'", self.d.log_text())


class TestTlsConfigErrors(unittest.TestCase):

    def test_missing_certificate_is_a_clear_start_error(self):
        world = World(self)
        d = world.daemon({'listen "relay"': {
            "address": "127.0.0.1:%d" % free_port(),
            "tls_cert": world.path("nope.pem"), "tls_key": world.path("nope.key")}},
            start=False)
        with self.assertRaises(RuntimeError):
            d.start(timeout=base.START_TIMEOUT)
        self.assertIn("tls_cert", d.log_text())
        self.assertIn("nope.pem", d.log_text())


if __name__ == "__main__":
    unittest.main()
