"""DSNs composed by src/bounce, parsed by an independent parser (Python's
email package): content types, the delivery-status fields, the returned
original, and no header injection from hostile reply texts.

Runs $MXB_BUILD_DIR/tests/tools/dsngen on the golden cases of
tests/unit/bounce/data and on cases written here into a temp dir.
"""
import email
import email.policy
import email.utils
import os
import shutil
import subprocess
import tempfile
import unittest

BUILD = os.environ.get("MXB_BUILD_DIR", "")
SOURCE = os.environ.get(
    "MXB_SOURCE_DIR",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
DSNGEN = os.path.join(BUILD, "tests", "tools", "dsngen")
DATA = os.path.join(SOURCE, "tests", "unit", "bounce", "data")


def run_dsngen(case):
    p = subprocess.run([DSNGEN, case], capture_output=True, timeout=30)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def status_blocks(msg):
    """The message/delivery-status part as a list of field dicts."""
    part = [p for p in msg.walk()
            if p.get_content_type() == "message/delivery-status"]
    assert len(part) == 1, "exactly one delivery-status part"
    blocks = part[0].get_payload()
    out = []
    for b in blocks:
        out.append({k.lower(): " ".join(str(v).split()) for k, v in b.items()})
    return out


class BounceDsnTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(DSNGEN):
            raise AssertionError("%s not built (set MXB_BUILD_DIR)" % DSNGEN)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mxb-dsn-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def generate(self, case):
        rc, out, err = run_dsngen(case)
        self.assertEqual(rc, 0, err)
        self.assertNotIn(b"\n", out.replace(b"\r\n", b""), "bare LF")
        self.assertNotIn(b"\r", out.replace(b"\r\n", b""), "bare CR")
        for line in out.split(b"\r\n"):
            self.assertLessEqual(len(line), 998)
        msg = parse(out)
        self.assertEqual(msg.defects, [])
        return msg, out, err

    def check_top(self, msg, subject_start):
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertEqual(msg["From"].addresses[0].addr_spec,
                         "MAILER-DAEMON@mx-out.example.org")
        self.assertTrue(str(msg["Subject"]).startswith(subject_start))
        self.assertEqual(str(msg["Auto-Submitted"]), "auto-replied")
        self.assertEqual(str(msg["MIME-Version"]), "1.0")
        self.assertIsNotNone(email.utils.parsedate_to_datetime(str(msg["Date"])))
        self.assertRegex(str(msg["Message-ID"]), r"^<[^<>@\s]+@[^<>@\s]+>$")
        parts = list(msg.iter_parts())
        self.assertEqual(parts[0].get_content_type(), "text/plain")
        self.assertEqual(parts[1].get_content_type(), "message/delivery-status")
        return parts

    def test_failure_three_recipients(self):
        msg, _, _ = self.generate(os.path.join(DATA, "dsn_fail3.in"))
        parts = self.check_top(msg, "Undelivered Mail")
        self.assertEqual(msg["To"].addresses[0].addr_spec, "alice@example.org")
        self.assertEqual(len(parts), 3)
        # RET=HDRS: only the original's header block comes back
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        returned = parse(parts[2].get_payload(decode=True))
        self.assertEqual(str(returned["Subject"]), "Quarterly report")
        self.assertEqual(str(returned["Message-ID"]), "<report-42@example.org>")
        self.assertNotIn("attached in spirit", parts[2].get_content())
        blocks = status_blocks(msg)
        self.assertEqual(len(blocks), 4)  # per-message + 3 recipients
        m = blocks[0]
        self.assertEqual(m["reporting-mta"], "dns; mx-out.example.org")
        self.assertEqual(m["original-envelope-id"], "QR-2023-11+2B42")
        self.assertEqual(m["arrival-date"], "Tue, 14 Nov 2023 22:13:20 +0000")
        rcpts = blocks[1:]
        self.assertEqual([r["final-recipient"] for r in rcpts],
                         ["rfc822; bob@example.net", "rfc822; carol@example.com",
                          "rfc822; dave@example.com"])
        self.assertEqual([r["status"] for r in rcpts],
                         ["5.1.1", "5.7.1", "5.2.2"])
        self.assertTrue(all(r["action"] == "failed" for r in rcpts))
        self.assertEqual(rcpts[0]["original-recipient"], "rfc822;Bob@Example.NET")
        self.assertNotIn("original-recipient", rcpts[1])
        self.assertEqual(rcpts[0]["remote-mta"], "dns; gmail-smtp-in.l.google.com")
        self.assertTrue(rcpts[0]["diagnostic-code"].startswith(
            "smtp; 550 5.1.1 The email account that you tried to reach does not exist."))
        self.assertTrue(rcpts[2]["diagnostic-code"].endswith("recipient mailbox is full"))
        for r in rcpts:
            self.assertIsNotNone(email.utils.parsedate_to_datetime(r["last-attempt-date"]))
        # the human part names every recipient and its reason
        text = parts[0].get_content()
        for addr in ("bob@example.net", "carol@example.com", "dave@example.com"):
            self.assertIn("<%s>: failed" % addr, text)
        self.assertIn("block list (S3150)", text)

    def test_delay(self):
        msg, _, err = self.generate(os.path.join(DATA, "dsn_delay.in"))
        parts = self.check_top(msg, "Delayed Mail")
        blocks = status_blocks(msg)
        self.assertEqual(blocks[1]["action"], "delayed")
        self.assertEqual(blocks[1]["status"], "4.7.1")
        self.assertEqual(blocks[1]["will-retry-until"],
                         "Sun, 19 Nov 2023 22:13:20 +0000")
        # RET=FULL, but no failure: headers only (RFC 3461 4.3)
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        self.assertIn("returned=headers", err)
        self.assertIn("keep trying", parts[0].get_content())

    def test_ret_full(self):
        msg, _, err = self.generate(os.path.join(DATA, "dsn_full.in"))
        parts = self.check_top(msg, "Undelivered Mail")
        self.assertEqual(parts[2].get_content_type(), "message/rfc822")
        inner = parts[2].get_payload()[0]
        self.assertEqual(str(inner["Subject"]), "Quarterly report")
        self.assertIn("attached in spirit", inner.get_content())
        self.assertIn("returned=full", err)
        self.assertEqual(status_blocks(msg)[0]["original-envelope-id"], "full-1")

    def test_ret_full_over_limit(self):
        msg, _, err = self.generate(os.path.join(DATA, "dsn_full_big.in"))
        parts = self.check_top(msg, "Undelivered Mail")
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        self.assertIn("truncated=1", err)
        self.assertIn("larger than 200 bytes", parts[0].get_content())
        self.assertEqual(status_blocks(msg)[1]["status"], "5.3.4")

    def test_utf8_and_hostile_reply_text(self):
        msg, raw, _ = self.generate(os.path.join(DATA, "dsn_odd.in"))
        parts = self.check_top(msg, "Undelivered Mail")
        # nothing from the reply text became a header, anywhere
        for part in msg.walk():
            self.assertIsNone(part["X-Injected"])
        for blk in status_blocks(msg):
            self.assertNotIn("x-injected", blk)
        # our own parts are pure ASCII whatever the reply held
        head_and_report = raw.split(b"Content-Type: message/rfc822")[0]
        self.assertTrue(all(b < 0x80 for b in head_and_report))
        rcpt = status_blocks(msg)[1]
        self.assertEqual(rcpt["final-recipient"],
                         "utf-8; j\\x{FC}rgen@b\\x{FC}cher.example")
        self.assertIn("Benutzer unbekannt", rcpt["diagnostic-code"])
        self.assertNotIn("\x1b", rcpt["diagnostic-code"])
        self.assertEqual(status_blocks(msg)[2]["status"], "5.0.0")
        # the returned original (bare LF, 8-bit) still parses
        inner = parts[2].get_payload()[0]
        self.assertEqual(str(inner["Subject"]), "Grüße")
        self.assertIn("no final newline", inner.get_content())

    def test_generated_case(self):
        """A case written here: many recipients, pipes and quotes in texts,
        a delayed and a failed recipient in one report."""
        orig = os.path.join(self.tmp, "orig.eml")
        with open(orig, "wb") as f:
            f.write(b"Subject: generated\r\nX-Test: 1\r\n\r\n" + b"line\r\n" * 1000)
        lines = ["reporting-mta: mx-out.example.org", "sender: s@example.org",
                 "ret: hdrs", "arrival: 1700000000", "original: orig.eml"]
        for i in range(20):
            action = "delayed" if i % 5 == 0 else "failed"
            code = "451|4.4.1" if action == "delayed" else "550|5.1.1"
            lines.append("rcpt: r%d@example.net|-|%s|-|mx%d.example.net|%s|"
                         "1700000500|1700432000|reply \"%d\" | with pipes"
                         % (i, action, i % 3, code, i))
        case = os.path.join(self.tmp, "case.in")
        with open(case, "w") as f:
            f.write("\n".join(lines) + "\n")
        msg, _, _ = self.generate(case)
        blocks = status_blocks(msg)
        self.assertEqual(len(blocks), 21)
        self.assertEqual(sum(b["action"] == "failed" for b in blocks[1:]), 16)
        self.assertEqual(sum("will-retry-until" in b for b in blocks[1:]), 4)
        self.assertIn('reply "7" | with pipes', blocks[8]["diagnostic-code"])
        self.assertNotIn("original-envelope-id", blocks[0])
        self.assertTrue(str(msg["Subject"]).startswith("Undelivered"))

    def test_null_sender_gets_no_dsn(self):
        case = os.path.join(self.tmp, "null.in")
        with open(case, "w") as f:
            f.write("reporting-mta: mx-out.example.org\nsender: <>\n"
                    "rcpt: a@example.net|-|failed|-|-|550|5.1.1|0|0|no\n")
        rc, out, err = run_dsngen(case)
        self.assertEqual(rc, 1)
        self.assertEqual(out, b"")
        self.assertIn("invalid DSN input", err)


class BounceRulesTest(unittest.TestCase):
    """The classifier through the tool, as an operator would try rules."""

    setUpClass = BounceDsnTest.setUpClass

    def classify(self, lines, rules=None):
        cmd = [DSNGEN, "--classify"] + (["--rules", rules] if rules else [])
        return subprocess.run(cmd, input="\n".join(lines) + "\n",
                              capture_output=True, text=True, timeout=30)

    def test_shipped_rules_match_golden_table(self):
        with open(os.path.join(DATA, "replies.in")) as f:
            cases = [l.rstrip("\n") for l in f if l.strip() and not l.startswith("#")]
        with open(os.path.join(DATA, "replies.ref")) as f:
            want = [" ".join(l.split()[1:]) for l in f if l.strip()]
        rules = os.path.join(SOURCE, "contrib", "bounce-rules.conf")
        for r in (None, rules):
            p = self.classify(cases, r)
            self.assertEqual(p.returncode, 0, p.stderr)
            got = [" ".join(l.split()[:3]) for l in p.stdout.splitlines()]
            self.assertEqual(got, want)

    def test_operator_rules_file(self):
        with tempfile.TemporaryDirectory(prefix="mxb-rules-") as tmp:
            path = os.path.join(tmp, "local.conf")
            with open(path, "w") as f:
                f.write("# local\nthrottled reputation mx=\\.example\\.net$ "
                        "code=4xx text=slow down\n")
            p = self.classify(["rcpt 450 - mx.example.net please slow down now",
                               "rcpt 450 - mx.example.com please slow down now"],
                              path)
            self.assertEqual(p.returncode, 0, p.stderr)
            out = p.stdout.splitlines()
            self.assertEqual(out[0], "throttled reputation temp %s:2" % path)
            self.assertEqual(out[1], "other none temp -")
            with open(path, "a") as f:
                f.write("bad-mailbox none status=5.1\n")
            p = self.classify(["rcpt 550 5.1.1 - x"], path)
            self.assertEqual(p.returncode, 1)
            self.assertIn("%s:3: status=5.1" % path, p.stderr)


if __name__ == "__main__":
    unittest.main()
