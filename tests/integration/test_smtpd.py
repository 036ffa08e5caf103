"""Submission server (src/api) seen from real clients: the routing tier's
Unix socket and plain TCP listeners.

Every bad-input rule is exercised by sending the exact bytes, asserting the
reply code, then checking with a fresh connection that the server still
works and, from the spool itself (tests/tools/spoolcat after the daemon
stopped), that nothing of the refused message was queued.

Delivery is paused in these daemons so the spool keeps what was accepted.
"""
import base64
import hashlib
import json
import os
import signal
import smtplib
import socket
import subprocess
import time
import unittest

from world import UnixSMTP, World, free_port, tool_path, wait_until

START_TIMEOUT = 90  # generous: sanitizer builds on a busy machine start slowly
BODY = b"Subject: test\r\nFrom: a@example.com\r\n\r\nhello\r\n"


class Raw:
    """A byte-exact SMTP client: send anything, read whole replies."""

    def __init__(self, addr, timeout=10, source=None, first=None):
        """source: the client's address (TCP); first: bytes sent at once,
        before the greeting could be read."""
        if isinstance(addr, str):
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(timeout)
            self.s.connect(addr)
        else:
            self.s = socket.create_connection(
                addr, timeout=timeout,
                source_address=(source, 0) if source else None)
        self.buf = b""
        if first:
            self.send(first)
        self.greeting = self.reply()

    def send(self, data):
        self.s.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """(code, text of the last line, all lines) of the next reply."""
        lines = []
        while True:
            line = self._line()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), line[4:], lines

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def closed(self, timeout=10):
        """True once the server closed the connection (EOF)."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def spool_messages(daemon, stop=True):
    """Stop the daemon, then every message in its spool (spoolcat)."""
    if stop:
        daemon.stop()
    path = daemon.sections["spool"]["path"]
    r = subprocess.run([tool_path("spoolcat"), "--body", path],
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("spoolcat failed: %s" % r.stderr.decode())
    msgs = [json.loads(line) for line in r.stdout.decode().splitlines()]
    for m in msgs:
        m["body"] = base64.b64decode(m.pop("body_b64"))
    return msgs


def original_body(stored):
    """The client's message: the stored body without our Received: field."""
    assert stored.startswith(b"Received: "), stored[:80]
    i = 0
    while True:  # the Received: field ends at the first line not folded
        j = stored.index(b"\r\n", i) + 2
        if stored[j:j + 1] not in (b"\t", b" "):
            return stored[j:]
        i = j


class SmtpdCase(unittest.TestCase):
    """A world with one daemon: routing socket + trusted plain TCP."""

    LISTEN = {}
    EXTRA = {}

    def setUp(self):
        self.world = World(self)
        self.port = free_port()
        sections = {
            "delivery": {"paused": "yes"},
            'listen "routing"': {"max_recipients": "10000"},
            'listen "local"': {"address": "127.0.0.1:%d" % self.port,
                               "trusted_networks": "127.0.0.0/8"},
        }
        for name, keys in self.LISTEN.items():
            sections.setdefault(name, {}).update(keys)
        for name, keys in self.EXTRA.items():
            sections.setdefault(name, {}).update(keys)
        self.d = self.world.daemon(sections, start=False)
        self.d.start(timeout=START_TIMEOUT)
        self.sock = self.d.routing_socket

    def raw(self, tcp=False):
        r = Raw(("127.0.0.1", self.port) if tcp else self.sock)
        self.addCleanup(r.close)
        self.assertEqual(r.greeting[0], 220)
        return r

    def ehlo(self, tcp=False):
        r = self.raw(tcp)
        self.assertEqual(r.cmd("EHLO client.test")[0], 250)
        return r

    def send_ok(self, marker, tcp=False):
        """A good message on a fresh connection (the server still works)."""
        r = self.ehlo(tcp)
        self.assertEqual(r.cmd("MAIL FROM:<ok@example.com>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s@example.net>" % marker)[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(b"Subject: " + marker.encode() + b"\r\n\r\nok\r\n.\r\n")
        code, text, _ = r.reply()
        self.assertEqual(code, 250, text)
        self.assertTrue(text.startswith("2.0.0 Ok: queued as "), text)
        r.cmd("QUIT")
        return text.split()[-1]

    def assert_only(self, markers):
        """The spool holds exactly the good messages sent with markers."""
        msgs = spool_messages(self.d)
        got = sorted(m["rcpts"][0]["address"].split("@")[0] for m in msgs)
        self.assertEqual(got, sorted(markers))
        return msgs


class TestAccept(SmtpdCase):

    def test_smtplib_unix_and_a_pipelined_10000_recipient_batch(self):
        with UnixSMTP(self.sock) as c:
            c.ehlo("router.test")
            self.assertIn("pipelining", c.esmtp_features)
            self.assertIn("chunking", c.esmtp_features)
            self.assertEqual(c.sendmail("one@example.com", ["one@example.net"], BODY), {})
        rcpts = ["user%d@domain%d.example" % (i, i % 7) for i in range(10000)]
        r = self.ehlo()
        r.send(b"MAIL FROM:<bulk@example.com> RET=HDRS ENVID=job+2B42\r\n" +
               b"".join(b"RCPT TO:<%s> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x+40y.example\r\n"
                        % a.encode() for a in rcpts) + b"DATA\r\n")
        codes = [r.reply()[0] for _ in range(len(rcpts) + 2)]
        self.assertEqual(codes, [250] * (len(rcpts) + 1) + [354])
        r.send(BODY + b".\r\n")
        self.assertEqual(r.reply()[0], 250)
        msgs = [m for m in spool_messages(self.d) if m["sender"] == "bulk@example.com"]
        self.assertEqual(len(msgs), 1)   # one message, one body, 10,000 recipients
        m = msgs[0]
        self.assertEqual(m["sender"], "bulk@example.com")
        self.assertEqual(m["listener"], "routing")
        self.assertEqual(m["ret"], "HDRS")
        self.assertEqual(m["envid"], "job+42")  # xtext-decoded for the store
        self.assertEqual(sorted(r["address"] for r in m["rcpts"]), sorted(rcpts))
        self.assertEqual({r["notify"] for r in m["rcpts"]}, {4 | 8})
        self.assertEqual({r["orcpt"] for r in m["rcpts"]},
                         {"rfc822;x+40y.example"})
        self.assertEqual(original_body(m["body"]), BODY)
        self.assertEqual(m["sha256"], hashlib.sha256(m["body"]).hexdigest())

    def test_large_message_streamed_intact(self):
        line = b"0123456789" * 7 + b"\r\n"
        body = b"Subject: big\r\n\r\n" + line * 30000 + b".starts with a dot\r\n"
        with UnixSMTP(self.sock) as c:
            self.assertEqual(c.sendmail("big@example.com", ["big@example.net"], body), {})
        msgs = spool_messages(self.d)
        self.assertEqual(len(msgs), 1)
        self.assertEqual(hashlib.sha256(original_body(msgs[0]["body"])).hexdigest(),
                         hashlib.sha256(body).hexdigest())

    def test_received_and_added_headers(self):
        with UnixSMTP(self.sock) as c:
            c.sendmail("a@example.com", ["r@example.net"], BODY)
        with smtplib.SMTP("127.0.0.1", self.port) as c:
            c.sendmail("a@example.com", ["t@example.net"], BODY)
            c.sendmail("a@example.com", ["u@example.net"],
                       b"Message-ID: <x@y>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                       b"\r\nbody\r\n")
        msgs = {m["rcpts"][0]["address"]: m for m in spool_messages(self.d)}
        unix = msgs["r@example.net"]["body"]
        self.assertIn(b"(unix socket routing)", unix.split(b"\r\n\r\n")[0])
        self.assertIn(b"for <r@example.net>;", unix)
        self.assertNotIn(b"Message-ID:", unix)  # the routing tier's own business
        tcp = msgs["t@example.net"]["body"]
        head = tcp.split(b"\r\n\r\n")[0]
        self.assertIn(b"([127.0.0.1])", head)
        self.assertIn(b"\r\nMessage-ID: <%s@mxbatch.test>" % msgs["t@example.net"]["id"].encode(), head)
        self.assertIn(b"\r\nDate: ", head)
        self.assertTrue(tcp.endswith(b"\r\n\r\nhello\r\n"))
        kept = msgs["u@example.net"]["body"]
        self.assertEqual(kept.count(b"Message-ID:"), 1)
        self.assertEqual(kept.count(b"\r\nDate:"), 1)

    def test_pipelined_messages_one_connection(self):
        r = self.ehlo()
        r.send(b"MAIL FROM:<p@example.com>\r\nRCPT TO:<m0a@example.net>\r\n"
               b"RCPT TO:<m0b@example.net>\r\nDATA\r\n")
        self.assertEqual([r.reply()[0] for _ in range(4)], [250, 250, 250, 354])
        for i in (1, 2, 3):
            r.send(b"Subject: %d\r\n\r\n..dotted\r\n.\r\n" % (i - 1) +
                   b"MAIL FROM:<p@example.com>\r\nRCPT TO:<m%da@example.net>\r\n"
                   b"RCPT TO:<m%db@example.net>\r\nDATA\r\n" % (i, i))
            codes = [r.reply()[0] for _ in range(5)]
            self.assertEqual(codes, [250, 250, 250, 250, 354])
        r.send(b"Subject: 3\r\n\r\nlast\r\n.\r\nQUIT\r\n")
        self.assertEqual(r.reply()[0], 250)
        self.assertEqual(r.reply()[0], 221)
        msgs = spool_messages(self.d)
        self.assertEqual(len(msgs), 4)
        self.assertEqual(sorted(len(m["rcpts"]) for m in msgs), [2, 2, 2, 2])
        self.assertTrue(any(original_body(m["body"]) == b"Subject: 0\r\n\r\n.dotted\r\n"
                            for m in msgs))

    def test_bdat_chunks_and_pipelined_last(self):
        r = self.ehlo()
        self.assertEqual(r.cmd("MAIL FROM:<b@example.com> BODY=8BITMIME")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<bdat1@example.net>")[0], 250)
        part1 = b"Subject: chunked\r\n\r\nline\r\n.\r\n"  # a dot line is data in BDAT
        part2 = b"caf\xc3\xa9\r\n"
        r.send(b"BDAT %d\r\n" % len(part1) + part1)
        self.assertEqual(r.reply()[0], 250)
        r.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        code, text, _ = r.reply()
        self.assertEqual(code, 250, text)
        body = b"Subject: two\r\n\r\nx\r\n"
        r.send(b"MAIL FROM:<b@example.com>\r\nRCPT TO:<bdat2@example.net>\r\n"
               b"BDAT %d LAST\r\n" % len(body) + body + b"NOOP\r\n")
        self.assertEqual([r.reply()[0] for _ in range(4)], [250, 250, 250, 250])
        msgs = {m["rcpts"][0]["address"]: m for m in spool_messages(self.d)}
        self.assertEqual(original_body(msgs["bdat1@example.net"]["body"]), part1 + part2)
        self.assertTrue(msgs["bdat1@example.net"]["8bitmime"])
        self.assertEqual(original_body(msgs["bdat2@example.net"]["body"]), body)

    def test_utf8_addresses_need_smtputf8_and_idn_become_a_labels(self):
        r = self.ehlo()
        code, text, _ = r.cmd("MAIL FROM:<j\u00f6rg@example.com>")
        self.assertEqual((code, text[:5]), (553, "5.6.7"))
        self.assertEqual(r.cmd("MAIL FROM:<j\u00f6rg@example.com> SMTPUTF8")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<idn@B\u00fccher.Example>")[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(b"Subject: utf8\r\n\r\nx\r\n.\r\n")
        self.assertEqual(r.reply()[0], 250)
        msgs = spool_messages(self.d)
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["sender"], "j\u00f6rg@example.com")
        self.assertEqual(msgs[0]["rcpts"][0]["address"], "idn@xn--bcher-kva.example")
        self.assertTrue(msgs[0]["smtputf8"])
        self.assertIn(b"with UTF8ESMTP", msgs[0]["body"])

    def test_swaks_over_unix_socket(self):
        r = subprocess.run(["swaks", "--socket", self.sock, "--to", "swaks@example.net",
                            "--from", "s@example.com", "--pipeline",
                            "--header", "Subject: via swaks"],
                           capture_output=True, timeout=60)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out)
        self.assertIn("250 2.0.0 Ok: queued as", out)
        self.assertEqual(len(self.assert_only(["swaks"])), 1)

    def test_unix_socket_mode_and_group(self):
        st = os.stat(self.sock)
        self.assertEqual(st.st_mode & 0o777, 0o660)   # the default mode
        import grp
        world = World(self)
        d = world.daemon({"delivery": {"paused": "yes"},
                          'listen "routing"': {"mode": "0600", "group": "daemon"}},
                         start=False)
        d.start(timeout=START_TIMEOUT)
        st = os.stat(d.routing_socket)
        self.assertEqual(st.st_mode & 0o777, 0o600)
        self.assertEqual(st.st_gid, grp.getgrnam("daemon").gr_gid)
        d.stop()
        self.assertFalse(os.path.exists(d.routing_socket))  # removed at stop
        bad = world.daemon({'listen "routing"': {"group": "no-such-group-x"}},
                           start=False)
        with self.assertRaises(RuntimeError):
            bad.start(timeout=START_TIMEOUT)
        self.assertIn("no such group 'no-such-group-x'", bad.log_text())

    def test_every_reply_has_an_enhanced_code(self):
        r = self.ehlo()
        for line in ("NOOP", "HELP", "VRFY x", "EXPN x", "RSET", "RCPT TO:<a@b.c>",
                     "DATA", "MAIL FROM:<a@b.c>", "MAIL FROM:<a@b.c>", "BOGUS"):
            code, text, _ = r.cmd(line)
            self.assertRegex(text, r"^[245]\.\d{1,3}\.\d{1,3} ", "%s -> %d %s" % (line, code, text))
        self.assertEqual(r.cmd("QUIT")[:2], (221, "2.0.0 Bye"))


class TestBadInput(SmtpdCase):
    """Each rule: exact bytes in, code out, nothing queued, server fine."""

    EXTRA = {"spool": {"max_message_size": "20K"},
             'listen "routing"': {"max_recipients": "5", "max_errors": "4"}}

    def expect(self, r, data, code, enh=None):
        r.send(data)
        got, text, _ = r.reply()
        self.assertEqual(got, code, "%r -> %d %s" % (data[:60], got, text))
        if enh:
            self.assertTrue(text.startswith(enh + " "), text)
        return text

    def in_data(self, r, rcpt="bad@example.net"):
        self.assertEqual(r.cmd("MAIL FROM:<s@example.com>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % rcpt)[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)

    def test_bare_lf_cr_nul_in_commands(self):
        r = self.ehlo()
        # a bare LF: the CRLF line it belongs to is refused once, whole
        self.expect(r, b"NOOP\nNOOP\r\n", 500, "5.5.2")
        self.expect(r, b"NO\rOP\r\n", 500, "5.5.2")
        self.expect(r, b"NO\x00OP\r\n", 500, "5.5.2")
        self.expect(r, b"NOOP\r\n", 250)  # same session goes on
        self.send_ok("after")
        self.assert_only(["after"])

    def test_long_command_line_refused_without_buffering(self):
        r = self.ehlo()
        r.send(b"MAIL FROM:<" + b"a" * 100000)
        code, text, _ = r.reply()  # answered before the line ended
        self.assertEqual((code, text[:5]), (500, "5.5.2"))
        r.send(b"@example.com>\r\n")   # the rest of that line is skipped
        self.expect(r, b"NOOP\r\n", 250)
        self.send_ok("fine")
        self.assert_only(["fine"])

    def test_bare_lf_in_data_is_smuggling_refused(self):
        r = self.ehlo()
        self.in_data(r)
        # <LF>.<LF> would end the message on a lax server and start a second one
        self.expect(r, b"Subject: a\r\n\r\nhi\n.\nMAIL FROM:<evil@example.com>\r\n"
                       b"RCPT TO:<smuggled@example.net>\r\nDATA\r\nevil\r\n.\r\n",
                    554, "5.6.0")
        self.expect(r, b"NOOP\r\n", 250)
        self.in_data(r)
        self.expect(r, b"Subject: b\r\n\r\nhi\r\n.\nMAIL FROM:<e@example.com>\r\n.\r\n",
                    554, "5.6.0")
        self.in_data(r)
        self.expect(r, b"Subject: c\r\n\r\nbare cr\r here\r\n.\r\n", 554, "5.6.0")
        self.send_ok("clean")
        self.assert_only(["clean"])

    def test_nul_in_data_refused(self):
        r = self.ehlo()
        self.in_data(r)
        self.expect(r, b"Subject: a\r\n\r\nnul\x00byte\r\n.\r\n", 554, "5.6.0")
        r2 = self.ehlo()
        r2.send(b"MAIL FROM:<s@example.com>\r\nRCPT TO:<bdatnul@example.net>\r\n"
                b"BDAT 5 LAST\r\na\x00b\r\n")
        self.assertEqual([r2.reply()[0] for _ in range(3)], [250, 250, 554])
        self.send_ok("good")
        self.assert_only(["good"])

    def test_bare_lf_in_bdat_refused(self):
        r = self.ehlo()
        body = b"Subject: x\r\n\r\nline\nline\r\n"
        r.send(b"MAIL FROM:<s@example.com>\r\nRCPT TO:<bdatlf@example.net>\r\n"
               b"BDAT %d LAST\r\n" % len(body) + body)
        self.assertEqual([r.reply()[0] for _ in range(3)], [250, 250, 554])
        # a chunk ending in CR followed by one starting with LF is fine
        c1, c2 = b"Subject:\r", b"\n\r\nx\r\n"
        r.send(b"MAIL FROM:<s@example.com>\r\nRCPT TO:<split@example.net>\r\n"
               b"BDAT %d\r\n" % len(c1) + c1 + b"BDAT %d LAST\r\n" % len(c2) + c2)
        self.assertEqual([r.reply()[0] for _ in range(4)], [250, 250, 250, 250])
        self.assert_only(["split"])

    def test_size_limit_while_receiving_and_declared(self):
        r = self.ehlo()
        self.expect(r, b"MAIL FROM:<s@example.com> SIZE=30000\r\n", 552, "5.3.4")
        self.in_data(r)
        r.send(b"Subject: big\r\n\r\n")
        for _ in range(300):
            r.send(b"x" * 98 + b"\r\n")
        self.expect(r, b".\r\n", 552, "5.3.4")
        big = b"y" * 30000
        r.send(b"MAIL FROM:<s@example.com>\r\nRCPT TO:<bigbdat@example.net>\r\n"
               b"BDAT %d LAST\r\n" % len(big) + big)
        self.assertEqual([r.reply()[0] for _ in range(3)], [250, 250, 552])
        self.send_ok("small")
        self.assert_only(["small"])

    def test_recipient_cap(self):
        r = self.ehlo()
        self.assertEqual(r.cmd("MAIL FROM:<s@example.com>")[0], 250)
        for i in range(5):
            self.assertEqual(r.cmd("RCPT TO:<cap%d@example.net>" % i)[0], 250)
        code, text, _ = r.cmd("RCPT TO:<cap5@example.net>")
        self.assertEqual((code, text[:5]), (452, "4.5.3"))
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(b"Subject: five\r\n\r\nx\r\n.\r\n")
        self.assertEqual(r.reply()[0], 250)
        msgs = spool_messages(self.d)
        self.assertEqual(len(msgs), 1)
        self.assertEqual(len(msgs[0]["rcpts"]), 5)

    def test_bad_paths_and_sequence(self):
        r = self.raw()
        self.expect(r, b"MAIL FROM:<a@example.com>\r\n", 503, "5.5.1")
        self.expect(r, b"EHLO\r\n", 501, "5.5.4")
        r = self.ehlo()
        self.expect(r, b"MAIL FROM:<nodomain>\r\n", 553, "5.1.7")
        self.expect(r, b"MAIL FROM:a@example.com\r\n", 501, "5.5.4")
        self.expect(r, b"MAIL FROM:<a@example.com> FOO=BAR\r\n", 555, "5.5.4")
        r = self.ehlo()
        self.expect(r, b"RCPT TO:<x@example.net>\r\n", 503, "5.5.1")
        self.expect(r, b"MAIL FROM:<a@example.com>\r\n", 250)
        self.expect(r, b"RCPT TO:<x@exa..mple.net>\r\n", 553, "5.1.3")
        self.expect(r, b"RCPT TO:<x@example.net> NOTIFY=SOMETIMES\r\n", 501, "5.5.4")
        self.expect(r, b"DATA\r\n", 554, "5.5.1")
        r = self.ehlo()
        self.expect(r, b"BDAT x\r\n", 501, "5.5.4")
        self.assertTrue(r.closed())
        self.send_ok("works")
        self.assert_only(["works"])

    def test_error_limit_closes_session(self):
        r = self.ehlo()
        for _ in range(3):
            self.expect(r, b"BOGUS\r\n", 500, "5.5.2")
        code, text, lines = (None, None, None)
        r.send(b"BOGUS\r\n")
        self.assertEqual(r.reply()[0], 500)
        code, text, _ = r.reply()
        self.assertEqual((code, text[:5]), (421, "4.7.0"))
        self.assertTrue(r.closed())
        self.send_ok("again")
        self.assert_only(["again"])

    def test_junk_commands_are_bounded(self):
        r = self.ehlo()
        r.send(b"NOOP\r\n" * 104)   # 100 are free, then each counts as an error
        self.assertEqual({r.reply()[0] for _ in range(104)}, {250})
        code, text, _ = r.reply()
        self.assertEqual((code, text[:5]), (421, "4.7.0"))
        self.assertTrue(r.closed())
        self.send_ok("afterjunk")
        self.assert_only(["afterjunk"])

    def test_disconnect_in_data_queues_nothing(self):
        r = self.ehlo()
        self.in_data(r)
        r.send(b"Subject: cut\r\n\r\nhalf a message\r\n")
        r.close()
        self.d.wait_log("client gone during message data: nothing queued")
        self.send_ok("whole")
        self.assert_only(["whole"])


class TestDeadlines(SmtpdCase):

    EXTRA = {'listen "routing"': {"idle_timeout": "1s", "command_timeout": "2s"}}

    def test_idle_timeout(self):
        r = self.ehlo()
        code, text, _ = r.reply()  # nothing sent: the server speaks first
        self.assertEqual((code, text[:5]), (421, "4.4.2"))
        self.assertTrue(r.closed())

    def test_slow_command_and_slow_data_hit_the_deadline(self):
        r = self.ehlo()
        for ch in b"NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP":
            try:
                r.send(bytes([ch]))  # a byte at a time, never a line end
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
        code, text, _ = r.reply()
        self.assertEqual((code, text[:5]), (421, "4.4.2"))
        r = self.ehlo()
        self.assertEqual(r.cmd("MAIL FROM:<s@example.com>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<slow@example.net>")[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        for _ in range(30):
            try:
                r.send(b"x\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
        code, text, _ = r.reply()
        self.assertEqual((code, text[:5]), (421, "4.4.2"))
        self.assertEqual(spool_messages(self.d), [])


class TestConnectionCaps(SmtpdCase):

    EXTRA = {'listen "routing"': {"max_connections": "3"},
             'listen "local"': {"max_connections_per_ip": "2"}}

    def test_connection_caps(self):
        held = [self.raw() for _ in range(3)]
        extra = Raw(self.sock)
        self.addCleanup(extra.close)
        self.assertEqual((extra.greeting[0], extra.greeting[1][:5]), (421, "4.7.0"))
        self.assertTrue(extra.closed())
        held[0].cmd("QUIT")
        self.assertTrue(held[0].closed())
        def slot_free():
            c = Raw(self.sock)
            c.close()
            return c.greeting[0] == 220
        wait_until(slot_free, what="a free slot")
        tcp = [self.raw(tcp=True) for _ in range(2)]
        third = Raw(("127.0.0.1", self.port))
        self.addCleanup(third.close)
        self.assertEqual((third.greeting[0], third.greeting[1][:5]), (421, "4.7.0"))
        self.assertIn("from your address", third.greeting[1])
        del tcp


class TestConnectionRate(SmtpdCase):
    """max_connections_per_ip_per_minute: new connections per client address
    on a TCP listener; trusted networks are exempt."""

    LISTEN = {'listen "local"': {"trusted_networks": "10.0.0.0/8",
                                 "max_connections_per_ip_per_minute": "3"}}

    def setUp(self):
        self.tport = free_port()
        self.EXTRA = {'listen "trusted"': {
            "address": "127.0.0.1:%d" % self.tport,
            "trusted_networks": "127.0.0.0/8",
            "max_connections_per_ip_per_minute": "3"}}
        super().setUp()

    def test_fourth_connection_in_a_minute_is_refused(self):
        for _ in range(3):
            r = self.raw(tcp=True)
            self.assertEqual(r.cmd("QUIT")[0], 221)
            self.assertTrue(r.closed())
        fourth = Raw(("127.0.0.1", self.port))
        self.addCleanup(fourth.close)
        code, text, _ = fourth.greeting
        self.assertEqual((code, text[:5]), (421, "4.7.0"))
        self.assertIn("limit 3 per minute", text)
        self.assertTrue(fourth.closed())
        # another client address has its own budget
        other = Raw(("127.0.0.1", self.port), source="127.0.0.2")
        self.addCleanup(other.close)
        self.assertEqual(other.greeting[0], 220)
        # a trusted network is exempt; so is the Unix socket
        for _ in range(5):
            t = Raw(("127.0.0.1", self.tport))
            self.assertEqual(t.greeting[0], 220)
            t.close()
        self.send_ok("still-open")
        self.assertIn("refused 127.0.0.1: Too many connections from your address "
                      "(limit 3 per minute)", self.d.log_text())
        self.assert_only(["still-open"])


class TestEarlyTalker(SmtpdCase):
    """greet_wait: a TCP client that talks before the greeting is refused;
    one that waited is greeted at once from then on."""

    LISTEN = {'listen "local"': {"trusted_networks": "10.0.0.0/8",
                                 "greet_wait": "2s"}}
    BOT = (b"EHLO bot.test\r\nMAIL FROM:<bot@example.com>\r\n"
           b"RCPT TO:<early@example.net>\r\n")

    def test_early_talker_refused_patient_client_greeted(self):
        bot = Raw(("127.0.0.1", self.port), first=self.BOT)
        self.addCleanup(bot.close)
        code, text, _ = bot.greeting          # the only reply it gets
        self.assertEqual((code, text[:5]), (554, "5.5.1"))
        self.assertIn("before the greeting", text)
        self.assertTrue(bot.closed())
        self.assertEqual(bot.buf, b"")
        self.assertIn("early talker", self.d.log_text())
        # a client that waits gets the greeting and a normal session
        r = self.ehlo(tcp=True)
        self.assertEqual(r.cmd("QUIT")[0], 221)
        # that address passed: greeted at once, pipelining from the start
        again = Raw(("127.0.0.1", self.port), first=b"EHLO client.test\r\n")
        self.addCleanup(again.close)
        self.assertEqual(again.greeting[0], 220)
        self.assertEqual(again.reply()[0], 250)
        # the Unix socket never waits
        u = Raw(self.sock, first=b"EHLO router.test\r\n")
        self.addCleanup(u.close)
        self.assertEqual(u.greeting[0], 220)
        self.assertEqual(u.reply()[0], 250)


class TestRelayPolicy(SmtpdCase):
    """A TCP listener that trusts nobody and has no accounts relays nothing."""

    LISTEN = {'listen "local"': {"trusted_networks": "10.0.0.0/8"}}

    def test_untrusted_client_cannot_relay(self):
        r = self.ehlo(tcp=True)
        self.assertEqual(r.cmd("MAIL FROM:<a@example.com>")[0], 250)
        code, text, _ = r.cmd("RCPT TO:<victim@example.net>")
        self.assertEqual((code, text[:5]), (550, "5.7.1"))
        self.assertEqual(r.cmd("DATA")[0], 554)
        self.assertNotIn("AUTH", " ".join(r.cmd("EHLO again")[2]))
        self.send_ok("trusted")  # the Unix socket is trusted
        self.assert_only(["trusted"])


class TestDurability(SmtpdCase):

    def test_kill_9_after_250_keeps_the_message(self):
        r = self.ehlo()
        self.assertEqual(r.cmd("MAIL FROM:<k@example.com>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<kill9@example.net>")[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        body = b"Subject: durable\r\n\r\n" + os.urandom(16).hex().encode() + b"\r\n"
        r.send(body + b".\r\n")
        code, text, _ = r.reply()
        self.assertEqual(code, 250, text)
        os.kill(self.d.proc.pid, signal.SIGKILL)   # right after the 250
        self.d.proc.wait()
        os.rename(self.d.out_path, self.d.out_path + ".killed")
        self.d.start(timeout=START_TIMEOUT)         # restart: recovery runs
        self.d.stop()
        msgs = spool_messages(self.d, stop=False)
        self.assertEqual([m["rcpts"][0]["address"] for m in msgs], ["kill9@example.net"])
        self.assertEqual(msgs[0]["id"], text.split()[-1])
        self.assertEqual(original_body(msgs[0]["body"]), body)


if __name__ == "__main__":
    unittest.main()
