"""test_smtpclient.py - the outbound SMTP client (src/smtpclient) against
the test MX sink (mxsink) and small scripted servers, driven by
tests/tools/smtpc_send: what each recipient's result is, what arrived at
which MX, over how many connections.
"""
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import unittest

import world

ALLOW = "127.0.0.0/8,::1"


class Run:
    """The JSON lines smtpc_send printed."""

    def __init__(self, events):
        self.events = events
        self.txns = [e for e in events if e["event"] == "txn"]
        self.connects = [e for e in events if e["event"] == "connect"]
        self.closed = [e for e in events if e["event"] == "closed"]
        self.summary = [e for e in events if e["event"] == "summary"][-1]

    def final(self):
        """addr -> the last result it got (retry-now rounds are resent)."""
        out = {}
        for t in self.txns:
            for r in t["rcpts"]:
                out[r["addr"]] = r
        return out

    def statuses(self):
        return {a: r["status"] for a, r in self.final().items()}


def send(test, w, mx, *args, allow=True, timeout=120, env=None):
    """Run smtpc_send to the exchangers mx = [(name, [ip, ...]), ...]."""
    argv = [world.tool_path("smtpc_send"), "--port", str(w.smtp_port)]
    for name, addrs in mx:
        argv += ["--mx", "%s=%s" % (name, ",".join(addrs))]
    if allow:
        argv += ["--allow-private", ALLOW]
    argv += [str(a) for a in args]
    r = subprocess.run(argv, capture_output=True, timeout=timeout, env=env)
    test.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
    lines = r.stdout.decode(errors="replace").splitlines()
    return Run([json.loads(l) for l in lines if l.strip()])


def rcpt_args(addrs):
    out = []
    for a in addrs:
        out += ["--rcpt", a]
    return out


# ----------------------------------------------------- scripted servers

class Scripted:
    """A fake SMTP server on ip:port; handler(server, sock) per connection
    (each in its own thread). Stopped at test cleanup."""

    def __init__(self, test, ip, port, handler):
        self.handler = handler
        self.conns = 0
        self.log = []
        self.tls_socks = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.stopping = False
        self.threads = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        test.addCleanup(self.close)

    def _run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns += 1
            t = threading.Thread(target=self._serve, args=(c, self.conns),
                                 daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, c, n):
        c.settimeout(10)
        try:
            self.handler(self, c, n)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            c.close()

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()
        for t in self.threads:
            t.join(5)
        for s in self.tls_socks:
            s.close()


class LineReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def data(self):
        """DATA content up to the dot line."""
        out = []
        while True:
            line = self.line()
            if line is None or line == ".":
                return out
            out.append(line)


def smtp_dialogue(srv, sock, caps=("PIPELINING",), tls_ctx=None,
                  after_starttls=b""):
    """A minimal, correct SMTP server loop (one command, one reply)."""
    r = LineReader(sock)
    sock.sendall(b"220 scripted.test ESMTP\r\n")
    while True:
        line = r.line()
        if line is None:
            return
        srv.log.append(line)
        cmd = line[:4].upper()
        if cmd == "EHLO":
            rest = [c for c in caps if tls_ctx is None or c != "STARTTLS"
                    or not isinstance(sock, ssl.SSLSocket)]
            text = ["250-scripted.test"] + ["250-" + c for c in rest[:-1]]
            text += ["250 " + (rest[-1] if rest else "ok")]
            if not rest:
                text = ["250 scripted.test"]
            sock.sendall(("\r\n".join(text) + "\r\n").encode())
        elif cmd == "STAR" and tls_ctx is not None:
            sock.sendall(b"220 2.0.0 go ahead\r\n" + after_starttls)
            sock = tls_ctx.wrap_socket(sock, server_side=True)
            srv.tls_socks.append(sock)
            r = LineReader(sock)
        elif cmd == "DATA":
            sock.sendall(b"354 go\r\n")
            r.data()
            sock.sendall(b"250 2.0.0 queued\r\n")
        elif cmd == "QUIT":
            sock.sendall(b"221 bye\r\n")
            return
        else:
            sock.sendall(b"250 2.0.0 ok\r\n")


# ---------------------------------------------------------------- tests

class SmtpClientSinkTest(unittest.TestCase):
    """Against mxsink."""

    def setUp(self):
        self.w = world.World(self)

    def sink(self, ip, config=None, **kw):
        return self.w.sink(ip, config=config, **kw)

    def test_rcpt_mix_each_recipient_gets_its_own_reply(self):
        ip = "127.0.1.101"
        sink = self.sink(ip, {"rcpt_rules": [
            {"match": "nouser", "reply": "550 5.1.1 no such user"},
            {"match": "grey", "reply": "451 4.7.1 greylisted, come back"},
            {"match": "full", "reply": "452 4.2.2 mailbox full"}]})
        rcpts = ["ok1@a.test", "nouser@a.test", "grey@a.test",
                 "full@a.test", "ok2@a.test"]
        run = send(self, self.w, [("mx.a.test", [ip])], *rcpt_args(rcpts))
        st = run.statuses()
        self.assertEqual(st, {"ok1@a.test": "delivered",
                              "nouser@a.test": "permfail",
                              "grey@a.test": "tempfail",
                              "full@a.test": "tempfail",
                              "ok2@a.test": "delivered"})
        f = run.final()
        self.assertEqual(f["nouser@a.test"]["code"], 550)
        self.assertEqual(f["nouser@a.test"]["enhanced"], "5.1.1")
        self.assertEqual(f["nouser@a.test"]["text"], "no such user")
        self.assertEqual(f["grey@a.test"]["enhanced"], "4.7.1")
        self.assertEqual(len(run.txns), 1)
        self.assertEqual(sink.delivered(), ["ok1@a.test", "ok2@a.test"])

    def test_452_split_goes_on_on_the_same_connection(self):
        ip = "127.0.1.102"
        sink = self.sink(ip, {"max_rcpts": 3})
        rcpts = ["u%d@b.test" % i for i in range(8)]
        run = send(self, self.w, [("mx.b.test", [ip])], *rcpt_args(rcpts))
        first = run.txns[0]
        self.assertEqual(first["learned_limit"], 3)
        self.assertEqual([r["status"] for r in first["rcpts"]],
                         ["delivered"] * 3 + ["retry-now"] * 5)
        self.assertEqual(first["rcpts"][3]["code"], 452)
        self.assertEqual(set(run.statuses().values()), {"delivered"})
        self.assertEqual(sorted(sink.delivered()), sorted(rcpts))
        self.assertEqual(len(sink.transactions(status="delivered")), 3)
        self.assertEqual(len(sink.connections()), 1)
        self.assertEqual(run.summary["connections"], 1)

    def test_gmail_style_multi_domain_451_split(self):
        ip = "127.0.1.103"
        sink = self.sink(ip, {"one_domain": True})
        rcpts = ["a@d1.test", "b@d2.test", "c@d1.test", "d@d3.test"]
        run = send(self, self.w, [("mx.d1.test", [ip])], *rcpt_args(rcpts))
        first = {r["addr"]: r for r in run.txns[0]["rcpts"]}
        self.assertEqual(first["b@d2.test"]["status"], "retry-now")
        self.assertTrue(first["b@d2.test"]["multi_domain"])
        self.assertEqual(first["b@d2.test"]["code"], 451)
        self.assertEqual(set(run.statuses().values()), {"delivered"})
        txns = sink.transactions(status="delivered")
        self.assertEqual(len(txns), 3)
        for t in txns:   # every delivered transaction is single-domain
            doms = {r["to"].split("@")[1] for r in t["rcpts"]
                    if r["reply"].startswith("2")}
            self.assertEqual(len(doms), 1, t)
        self.assertEqual(len(sink.connections()), 1)

    def check_drop_after_dot(self, *opts):
        ip = "127.0.1.104"
        sink = self.sink(ip, {"drop_at": "dot"})
        run = send(self, self.w, [("mx.c.test", [ip])], "--rcpt", "x@c.test",
                   "--rcpt", "y@c.test", *opts)
        self.assertEqual(run.statuses(), {"x@c.test": "possibly-delivered",
                                          "y@c.test": "possibly-delivered"})
        self.assertEqual(run.summary["delivered"], 0)
        self.assertEqual(run.summary["possibly_delivered"], 2)
        self.assertEqual(run.txns[0]["error"], "lost")
        self.assertEqual(len(sink.transactions(status="dropped")), 1)

    def test_drop_after_final_dot_is_possibly_delivered_bdat(self):
        self.check_drop_after_dot()

    def test_drop_after_final_dot_is_possibly_delivered_data(self):
        self.check_drop_after_dot("--no-chunking")

    def test_drop_at_rcpt_is_a_plain_tempfail(self):
        ip = "127.0.1.105"
        self.sink(ip, {"drop_at": "rcpt"})
        run = send(self, self.w, [("mx.c.test", [ip])], "--rcpt", "x@c.test")
        self.assertEqual(run.statuses(), {"x@c.test": "tempfail"})
        self.assertEqual(run.txns[0]["error"], "lost")

    def test_421_at_greeting_goes_to_the_next_mx(self):
        ip1, ip2 = "127.0.1.106", "127.0.1.107"
        sink = self.sink([ip1, ip2], {"listen": {ip1: {"replies": {
            "greeting": "421 4.3.2 too busy"}}}})
        run = send(self, self.w, [("mx1.e.test", [ip1]), ("mx2.e.test", [ip2])],
                   "--rcpt", "u@e.test")
        self.assertEqual(run.statuses(), {"u@e.test": "delivered"})
        self.assertEqual(run.txns[0]["mx"], "mx2.e.test")
        self.assertEqual(run.txns[0]["addr"], ip2)
        self.assertEqual(sink.delivered(ip2), ["u@e.test"])
        self.assertEqual(sink.transactions(ip1), [])
        # with no other MX the owner learns it as a refused greeting
        run = send(self, self.w, [("mx1.e.test", [ip1])], "--rcpt", "u@e.test")
        self.assertEqual(run.closed[0]["error"], "greeting")
        self.assertIn("421 4.3.2 too busy", run.closed[0]["reason"])

    def test_all_mx_refuse_at_greeting_is_a_connection_failure(self):
        ip = "127.0.1.108"
        self.sink(ip, {"replies": {"greeting": "554 5.7.1 go away"}})
        run = send(self, self.w, [("mx.f.test", [ip])], "--rcpt", "u@f.test")
        self.assertEqual(run.txns, [])
        self.assertEqual(run.closed[0]["error"], "greeting")
        self.assertIn("554 5.7.1 go away", run.closed[0]["reason"])
        self.assertEqual(run.summary["unsent_jobs"], 1)

    def test_connection_refused_falls_back_to_the_next_mx(self):
        ip1, ip2 = "127.0.1.109", "127.0.1.110"   # nothing listens on ip1
        sink = self.sink(ip2)
        run = send(self, self.w, [("mx1.g.test", [ip1]), ("mx2.g.test", [ip2])],
                   "--rcpt", "u@g.test")
        self.assertEqual(run.statuses(), {"u@g.test": "delivered"})
        self.assertEqual(run.txns[0]["mx"], "mx2.g.test")
        self.assertEqual(sink.delivered(), ["u@g.test"])

    def test_max_addresses_limits_the_fallback(self):
        ips = ["127.0.1.111", "127.0.1.112", "127.0.1.113"]
        sink = self.sink(ips[2])
        run = send(self, self.w, [("mx.h.test", ips)], "--rcpt", "u@h.test",
                   "--max-addresses", "2")
        self.assertEqual(run.txns, [])
        self.assertEqual(run.closed[0]["error"], "connect")
        self.assertEqual(sink.connections(), [])

    def test_private_destination_refused_by_default(self):
        ip = "127.0.1.114"
        sink = self.sink(ip)
        run = send(self, self.w, [("mx.i.test", [ip])], "--rcpt", "u@i.test",
                   allow=False)
        self.assertEqual(run.closed[0]["error"], "unsafe-destination")
        self.assertIn("refusing loopback destination", run.closed[0]["reason"])
        self.assertEqual(sink.connections(), [])
        # a CIDR list that does not cover it refuses too; one that does opens
        run = send(self, self.w, [("mx.i.test", [ip])], "--rcpt", "u@i.test",
                   "--allow-private", "10.0.0.0/8", allow=False)
        self.assertEqual(run.closed[0]["error"], "unsafe-destination")
        run = send(self, self.w, [("mx.i.test", [ip])], "--rcpt", "u@i.test",
                   "--allow-private", "127.0.1.114/32", allow=False)
        self.assertEqual(run.statuses(), {"u@i.test": "delivered"})

    def test_messages_per_connection_cap(self):
        ip = "127.0.1.115"
        sink = self.sink(ip)
        run = send(self, self.w, [("mx.j.test", [ip])], "--rcpt", "u@j.test",
                   "--messages", "5", "--msgs-per-conn", "2")
        self.assertEqual(run.summary["delivered"], 5)
        conns = sink.connections()
        self.assertEqual(sorted(c["messages"] for c in conns), [1, 2, 2])
        self.assertTrue(all(c["close"] == "quit" for c in conns))

    def test_server_message_cap_421_ends_the_session(self):
        ip = "127.0.1.116"
        sink = self.sink(ip, {"max_messages": 2})
        run = send(self, self.w, [("mx.k.test", [ip])], "--rcpt", "u@k.test",
                   "--messages", "3")
        res = [t["rcpts"][0]["status"] for t in run.txns]
        self.assertEqual(res, ["delivered", "delivered", "tempfail"])
        self.assertEqual(run.txns[2]["error"], "shutdown")
        self.assertEqual(run.txns[2]["rcpts"][0]["code"], 421)
        self.assertEqual(len(sink.transactions(status="delivered")), 2)

    def test_slow_reply_hits_a_short_timeout(self):
        ip = "127.0.1.117"
        sink = self.sink(ip, {"delay_ms": {"rcpt": 3000}})
        run = send(self, self.w, [("mx.l.test", [ip])], "--rcpt", "u@l.test",
                   "--timeout", "1s")
        self.assertEqual(run.statuses(), {"u@l.test": "tempfail"})
        self.assertEqual(run.txns[0]["error"], "timeout")
        self.assertIn("RCPT", run.txns[0]["reason"])
        self.assertEqual(sink.transactions(status="delivered"), [])

    def test_silent_after_final_dot_is_possibly_delivered(self):
        ip = "127.0.1.118"
        self.sink(ip, {"hang_at": "dot"})
        run = send(self, self.w, [("mx.l.test", [ip])], "--rcpt", "u@l.test",
                   "--timeout", "1s")
        self.assertEqual(run.statuses(), {"u@l.test": "possibly-delivered"})
        self.assertEqual(run.txns[0]["error"], "timeout")

    def outcome_matrix(self, ip, extra=()):
        rcpts = ["ok%d@m.test" % i for i in range(3)] + [
            "nouser@m.test", "grey@m.test", "ok9@m.test"]
        out = []
        for opts in ([], ["--no-pipelining"], ["--no-chunking"],
                     ["--no-pipelining", "--no-chunking"]):
            run = send(self, self.w, [("mx.m.test", [ip])],
                       *(rcpt_args(rcpts) + opts + list(extra)))
            out.append(sorted((a, r["status"], r["code"], r["enhanced"])
                              for a, r in run.final().items()))
        return out

    def test_pipelining_and_bdat_on_off_give_identical_outcomes(self):
        ip = "127.0.1.119"
        sink = self.sink(ip, {"max_rcpts": 4, "rcpt_rules": [
            {"match": "nouser", "reply": "550 5.1.1 no such user"},
            {"match": "grey", "reply": "450 4.2.0 greylisted"}]})
        out = self.outcome_matrix(ip)
        for o in out[1:]:
            self.assertEqual(o, out[0])
        st = {a: s for a, s, _, _ in out[0]}
        self.assertEqual(st["nouser@m.test"], "permfail")
        self.assertEqual(st["grey@m.test"], "tempfail")
        self.assertEqual(st["ok9@m.test"], "delivered")
        methods = {t["method"] for t in sink.transactions(status="delivered")}
        self.assertEqual(methods, {"DATA", "BDAT"})
        digests = {t["sha256"] for t in sink.transactions(status="delivered")}
        self.assertEqual(len(digests), 1)

    def test_body_line_ends_and_dots_arrive_intact(self):
        ip = "127.0.1.120"
        sink = self.sink(ip)
        body = (b"Subject: dots\r\n\r\n.\r\n..two\r\nbare lf\nbare cr\r"
                b".after bare\n" + b"L" * 1500 + b"\r\nlast line without end")
        want = (b"Subject: dots\r\n\r\n.\r\n..two\r\nbare lf\r\nbare cr\r\n"
                b".after bare\r\n" + b"L" * 998 + b"\r\n " + b"L" * 502 +
                b"\r\nlast line without end\r\n")
        path = self.w.path("body.eml")
        with open(path, "wb") as f:
            f.write(body)
        for opts in ([], ["--no-chunking"]):
            run = send(self, self.w, [("mx.n.test", [ip])], "--rcpt",
                       "u@n.test", "--body", path, *opts)
            self.assertEqual(run.statuses(), {"u@n.test": "delivered"})
        txns = sink.transactions(status="delivered")
        self.assertEqual({t["method"] for t in txns}, {"DATA", "BDAT"})
        for t in txns:
            self.assertEqual(t["sha256"], hashlib.sha256(want).hexdigest(), t)

    def test_helo_fallback_sends_no_extensions(self):
        ip = "127.0.1.134"
        sink = self.sink(ip, {"replies": {"ehlo": "502 5.5.1 EHLO not here"},
                              "strict": True})
        run = send(self, self.w, [("mx.h.test", [ip])], "--rcpt", "u@h.test",
                   "--notify", "FAILURE", "--8bit")
        self.assertEqual(run.statuses(), {"u@h.test": "delivered"})
        self.assertFalse(run.connects[0]["esmtp"])
        t = sink.transactions()[0]
        self.assertEqual((t["helo_cmd"], t["mail_params"], t["method"]),
                         ("HELO", "", "DATA"))
        self.assertEqual(t["rcpts"][0]["params"], "")

    def test_dsn_parameters_passed_only_when_offered(self):
        ip1, ip2 = "127.0.1.121", "127.0.1.122"
        sink = self.sink([ip1, ip2], {"listen": {ip2: {"ehlo": {"dsn": False}}}})
        args = ["--rcpt", "u@o.test", "--notify", "SUCCESS,FAILURE", "--orcpt",
                "--ret", "HDRS", "--envid", "QQ123"]
        send(self, self.w, [("mx.o.test", [ip1])], *args)
        send(self, self.w, [("mx.o.test", [ip2])], *args)
        t1 = sink.transactions(ip1)[0]
        self.assertIn("RET=HDRS", t1["mail_params"])
        self.assertIn("ENVID=QQ123", t1["mail_params"])
        self.assertEqual(t1["rcpts"][0]["params"],
                         "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u@o.test")
        t2 = sink.transactions(ip2)[0]
        self.assertNotIn("RET=", t2["mail_params"])
        self.assertEqual(t2["rcpts"][0]["params"], "")
        self.assertEqual(t2["status"], "delivered")

    def test_size_limit_fails_permanently_without_sending(self):
        ip = "127.0.1.123"
        sink = self.sink(ip, {"ehlo": {"size": 1000}})
        run = send(self, self.w, [("mx.p.test", [ip])], "--rcpt", "u@p.test",
                   "--body-size", "4096")
        r = run.final()["u@p.test"]
        self.assertEqual(r["status"], "permfail")
        self.assertEqual(r["enhanced"], "5.3.4")
        self.assertIn("1000", r["text"])
        self.assertEqual(sink.transactions(), [])

    def test_smtputf8_needed_but_not_offered(self):
        ip = "127.0.1.124"
        sink = self.sink(ip, {"ehlo": {"smtputf8": False}})
        run = send(self, self.w, [("mx.q.test", [ip])], "--rcpt",
                   "j\u00f6rg@q.test", "--smtputf8")
        r = run.final()["j\u00f6rg@q.test"]
        self.assertEqual((r["status"], r["enhanced"]), ("permfail", "5.6.7"))
        self.assertEqual(sink.transactions(), [])
        sink.reconfigure({})
        run = send(self, self.w, [("mx.q.test", [ip])], "--rcpt",
                   "j\u00f6rg@q.test", "--smtputf8", "--8bit")
        self.assertEqual(run.statuses(), {"j\u00f6rg@q.test": "delivered"})
        self.assertIn("SMTPUTF8", sink.transactions()[0]["mail_params"])
        self.assertIn("BODY=8BITMIME", sink.transactions()[0]["mail_params"])

    def test_multi_domain_refusal_after_a_refused_first(self):
        ip = "127.0.1.126"
        sink = self.sink(ip, {"one_domain": True, "rcpt_rules": [
            {"match": "nouser", "reply": "550 5.1.1 no such user"}]})
        rcpts = ["nouser@d1.test", "b@d2.test", "c@d1.test", "e@d2.test"]
        run = send(self, self.w, [("mx.d1.test", [ip])], *rcpt_args(rcpts))
        self.assertEqual(run.statuses(), {
            "nouser@d1.test": "permfail", "b@d2.test": "delivered",
            "c@d1.test": "delivered", "e@d2.test": "delivered"})
        # the sink accepted d2 first; c@d1 was refused as an extra domain
        # and went out alone in the next transaction
        first = {r["addr"]: r for r in run.txns[0]["rcpts"]}
        self.assertEqual(first["c@d1.test"]["status"], "retry-now")
        self.assertEqual(len(sink.transactions(status="delivered")), 2)

    def test_rset_after_a_refused_mail_then_next_message(self):
        ip = "127.0.1.127"
        cfg = {"tempfail_every": 2, "tempfail_at": "mail",
               "tempfail_reply": "451 4.3.0 try later"}
        sink = self.sink(ip, cfg)
        for i, opts in enumerate((["--no-pipelining"], [])):
            sink.reconfigure(cfg)          # restarts the every-2nd count
            run = send(self, self.w, [("mx.s.test", [ip])], "--rcpt",
                       "u@s.test", "--messages", "3", *opts)
            res = [(t["rcpts"][0]["status"], t["rcpts"][0]["code"])
                   for t in run.txns]
            self.assertEqual(res, [("delivered", 250), ("tempfail", 451),
                                   ("delivered", 250)], opts)
            self.assertEqual(run.summary["connections"], 1)
            conn = sink.wait_connections(i + 1)[i]
            # EHLO, 3x MAIL, RSET, 2x RCPT, 2x BDAT, QUIT; with PIPELINING
            # the refused MAIL's RCPT and BDAT went out too (and failed)
            self.assertEqual(conn["commands"], 10 + 2 * (not opts), opts)
            self.assertEqual(conn["messages"], 2)

    def test_ipv6_and_source_address(self):
        sink = self.sink("::1")
        run = send(self, self.w, [("mx6.t.test", ["::1"])], "--rcpt",
                   "u@t.test")
        self.assertEqual(run.statuses(), {"u@t.test": "delivered"})
        self.assertEqual(sink.transactions()[0]["peer"], "::1")
        ip = "127.0.1.128"
        sink4 = self.sink(ip)
        run = send(self, self.w, [("mx.t.test", [ip])], "--rcpt", "u@t.test",
                   "--source", "127.0.0.77")
        self.assertEqual(run.statuses(), {"u@t.test": "delivered"})
        self.assertEqual(sink4.transactions()[0]["peer"], "127.0.0.77")

    def test_large_body_in_bdat_chunks_without_pipelining(self):
        ip = "127.0.1.129"
        sink = self.sink(ip)
        path = self.w.path("mid.eml")
        data = b"Subject: mid\r\n\r\n" + (b"y" * 78 + b"\r\n") * 5000
        with open(path, "wb") as f:
            f.write(data)
        for opts in (["--no-pipelining"], [], ["--no-chunking"]):
            run = send(self, self.w, [("mx.u.test", [ip])], "--rcpt",
                       "u@u.test", "--body", path, *opts)
            self.assertEqual(run.statuses(), {"u@u.test": "delivered"})
        txns = sink.transactions(status="delivered")
        self.assertEqual({t["sha256"] for t in txns},
                         {hashlib.sha256(data).hexdigest()})
        self.assertGreater(txns[0]["bdat_chunks"], 5)

    def test_many_recipients_many_messages_one_connection(self):
        ip = "127.0.1.125"
        sink = self.sink(ip)
        run = send(self, self.w, [("mx.r.test", [ip])], "--gen-rcpts", "250",
                   "--gen-domain", "r.test", "--messages", "4", "--quiet")
        self.assertEqual(run.summary["delivered"], 1000)
        txns = sink.transactions(status="delivered")
        self.assertEqual(sorted(t["accepted"] for t in txns),
                         [50] * 4 + [100] * 8)
        self.assertEqual(len(sink.connections()), 1)


class SmtpClientTlsTest(unittest.TestCase):
    """STARTTLS policies against mxsink with a certificate of a test CA."""

    def setUp(self):
        self.w = world.World(self)

    def test_may_encrypt_verify(self):
        ip = "127.0.1.130"
        sink = self.w.sink(ip, hostname="mx.tls.test", tls=True)
        mx = [("mx.tls.test", [ip])]
        for pol in ("may", "encrypt"):
            run = send(self, self.w, mx, "--rcpt", "u@tls.test", "--tls", pol)
            self.assertEqual(run.statuses(), {"u@tls.test": "delivered"})
            self.assertTrue(run.txns[0]["tls"].startswith("TLS"), run.txns)
        run = send(self, self.w, mx, "--rcpt", "u@tls.test", "--tls", "verify",
                   "--ca", sink.cert.ca)
        self.assertEqual(run.statuses(), {"u@tls.test": "delivered"})
        self.assertNotEqual(run.txns[0]["cipher"], "")
        txns = sink.transactions(status="delivered")
        self.assertEqual(len(txns), 3)
        self.assertTrue(all(t["tls"] for t in txns))

    def test_verify_fails_on_wrong_name_or_unknown_ca(self):
        ip = "127.0.1.131"
        sink = self.w.sink(ip, hostname="mx.tls.test", tls=True)
        run = send(self, self.w, [("other.name.test", [ip])], "--rcpt",
                   "u@tls.test", "--tls", "verify", "--ca", sink.cert.ca)
        self.assertEqual(run.txns, [])
        self.assertEqual(run.closed[0]["error"], "tls")
        self.assertIn("verif", run.closed[0]["reason"])
        run = send(self, self.w, [("mx.tls.test", [ip])], "--rcpt",
                   "u@tls.test", "--tls", "verify")   # system CAs only
        self.assertEqual(run.closed[0]["error"], "tls")
        self.assertEqual(sink.transactions(), [])

    def test_required_tls_without_starttls_goes_elsewhere(self):
        ip1, ip2 = "127.0.1.132", "127.0.1.133"
        sink = self.w.sink([ip1, ip2], hostname="mx.tls.test", tls=True,
                           config={"listen": {ip1: {"ehlo": {"starttls": False}}}})
        run = send(self, self.w, [("mx1.tls.test", [ip1]),
                                  ("mx2.tls.test", [ip2])],
                   "--rcpt", "u@tls.test", "--tls", "encrypt")
        self.assertEqual(run.statuses(), {"u@tls.test": "delivered"})
        self.assertEqual(run.txns[0]["addr"], ip2)
        self.assertEqual(sink.transactions(ip1), [])
        # "may" sends in plaintext where STARTTLS is not offered
        run = send(self, self.w, [("mx1.tls.test", [ip1])], "--rcpt",
                   "u@tls.test", "--tls", "may")
        self.assertEqual(run.statuses(), {"u@tls.test": "delivered"})
        self.assertEqual(run.txns[0]["tls"], "")


class SmtpClientHostileTest(unittest.TestCase):
    """Scripted servers that misbehave: each ends the session as a
    temporary failure of the batch, with a reason, and nothing crashes."""

    def setUp(self):
        self.w = world.World(self)

    def serve(self, ip, handler):
        return Scripted(self, ip, self.w.smtp_port, handler)

    def run_one(self, ip, *opts):
        return send(self, self.w, [("mx.evil.test", [ip])], "--rcpt",
                    "u@evil.test", "--timeout", "4s", *opts, timeout=60)

    def test_greeting_line_too_long(self):
        ip = "127.0.1.140"
        self.serve(ip, lambda s, c, n: (c.sendall(b"220 " + b"x" * 1000000),
                                        c.recv(10)))
        run = self.run_one(ip)
        self.assertEqual(run.closed[0]["error"], "protocol")
        self.assertIn("longer than", run.closed[0]["reason"])

    def test_endless_multiline_ehlo(self):
        ip = "127.0.1.141"

        def h(s, c, n):
            c.sendall(b"220 hi\r\n")
            c.recv(100)
            for _ in range(2000):
                c.sendall(b"250-SPAM SPAM SPAM\r\n" * 10)

        self.serve(ip, h)
        run = self.run_one(ip)
        self.assertEqual(run.closed[0]["error"], "protocol")
        self.assertIn("multi-line reply too long", run.closed[0]["reason"])

    def test_invalid_reply_codes(self):
        for i, bad in enumerate([b"999 what\r\n", b"2500 ok\r\n", b"abc\r\n",
                                 b"250-a\r\n550 b\r\n", b"25\r\n"]):
            ip = "127.0.1.%d" % (142 + i)

            def h(s, c, n, bad=bad):
                r = LineReader(c)
                c.sendall(b"220 hi\r\n")
                r.line()
                c.sendall(b"250 hi\r\n")
                r.line()
                c.sendall(bad)
                r.line()

            self.serve(ip, h)
            run = self.run_one(ip)
            self.assertEqual(run.statuses(), {"u@evil.test": "tempfail"}, bad)
            self.assertEqual(run.txns[0]["error"], "protocol", bad)

    def test_reply_before_command(self):
        ip = "127.0.1.150"

        def h(s, c, n):
            c.sendall(b"220 hi\r\n250 ok\r\n")   # a reply nobody asked for
            LineReader(c).line()

        self.serve(ip, h)
        run = self.run_one(ip)
        self.assertEqual(run.closed[0]["error"], "protocol")
        self.assertIn("more replies than commands", run.closed[0]["reason"])

    def test_silent_server(self):
        ip = "127.0.1.151"
        self.serve(ip, lambda s, c, n: c.recv(100))
        run = self.run_one(ip)
        self.assertEqual(run.closed[0]["error"], "timeout")
        self.assertIn("BANNER", run.closed[0]["reason"])

    def test_data_answered_with_250_is_not_delivered(self):
        ip = "127.0.1.152"

        def h(s, c, n):
            r = LineReader(c)
            c.sendall(b"220 hi\r\n")
            while True:
                line = r.line()
                if line is None:
                    return
                c.sendall(b"250 ok\r\n")

        self.serve(ip, h)
        run = self.run_one(ip)
        self.assertEqual(run.statuses(), {"u@evil.test": "tempfail"})
        self.assertEqual(run.txns[0]["error"], "protocol")

    def idle_death(self, ip, last):
        def h(s, c, n):
            r = LineReader(c)
            c.sendall(b"220 hi\r\n")
            for reply in (b"250 hi\r\n", b"250 ok\r\n", b"250 ok\r\n"):
                r.line()
                c.sendall(reply)
            r.line()
            c.sendall(b"354 go\r\n")
            r.data()
            c.sendall(b"250 2.0.0 queued\r\n")
            time.sleep(0.3)
            c.sendall(last)

        self.serve(ip, h)
        return self.run_one(ip, "--linger", "5s")

    def test_connection_dying_while_idle_tells_the_owner(self):
        run = self.idle_death("127.0.1.155", b"421 4.4.2 idle too long\r\n")
        self.assertEqual(run.statuses(), {"u@evil.test": "delivered"})
        self.assertEqual(run.closed[0]["error"], "shutdown")
        self.assertIn("421 4.4.2 idle too long", run.closed[0]["reason"])
        run = self.idle_death("127.0.1.156", b"")   # just closes
        self.assertEqual(run.statuses(), {"u@evil.test": "delivered"})
        self.assertEqual(run.closed[0]["error"], "lost")
        self.assertIn("READY", run.closed[0]["reason"])

    def test_354_after_every_rcpt_refused_gets_an_empty_message(self):
        ip = "127.0.1.157"
        seen = []

        def h(s, c, n):
            r = LineReader(c)
            c.sendall(b"220 hi\r\n")
            r.line()
            c.sendall(b"250-hi\r\n250 PIPELINING\r\n")
            for want in ("MAIL", "RCPT", "DATA"):
                seen.append(r.line())
            # RFC 2920 3.1: a server may accept DATA with no recipient
            c.sendall(b"250 ok\r\n550 5.1.1 nobody\r\n354 go\r\n")
            seen.append(r.data())
            c.sendall(b"554 5.5.1 no valid recipients\r\n")
            seen.append(r.line())
            c.sendall(b"221 bye\r\n")

        self.serve(ip, h)
        run = self.run_one(ip, "--no-chunking")
        r = run.final()["u@evil.test"]
        self.assertEqual((r["status"], r["code"]), ("permfail", 550))
        self.assertTrue(run.txns[0]["conn_usable"])
        self.assertEqual(seen[3], [])          # the message sent was empty
        # ... and the session stayed in step to a clean QUIT (an RSET is
        # only sent before a next transaction)
        self.assertEqual(seen[4], "QUIT")

    def test_starttls_injection_is_discarded(self):
        ip = "127.0.1.153"
        cert = self.w.cert(names=("mx.evil.test",), ips=(ip,))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert.cert, cert.key)
        srv = self.serve(ip, lambda s, c, n: smtp_dialogue(
            s, c, caps=("PIPELINING", "STARTTLS"), tls_ctx=ctx,
            after_starttls=b"250 injected\r\n"))
        run = self.run_one(ip, "--tls", "encrypt", "--no-pipelining")
        self.assertEqual(run.statuses(), {"u@evil.test": "delivered"})
        self.assertNotEqual(run.txns[0]["tls"], "")
        # the injected "250" was not taken as the reply to anything: the
        # client sent EHLO again inside TLS and the dialogue stayed in step
        self.assertEqual([l.split()[0] for l in srv.log][:3],
                         ["EHLO", "STARTTLS", "EHLO"])

    def test_may_falls_back_to_plaintext_after_failed_handshake(self):
        ip = "127.0.1.154"

        def h(s, c, n):
            if n == 1:   # offers STARTTLS, then speaks garbage instead of TLS
                r = LineReader(c)
                c.sendall(b"220 hi\r\n")
                r.line()
                c.sendall(b"250-hi\r\n250 STARTTLS\r\n")
                r.line()
                c.sendall(b"220 go\r\n")
                c.sendall(b"this is not TLS at all\r\n" * 10)
                c.recv(1000)
            else:
                smtp_dialogue(s, c, caps=("STARTTLS",))

        srv = self.serve(ip, h)
        run = self.run_one(ip, "--tls", "may")
        self.assertEqual(run.statuses(), {"u@evil.test": "delivered"})
        self.assertTrue(run.connects[0]["tls_fallback"])
        self.assertEqual(run.txns[0]["tls"], "")
        self.assertEqual(srv.conns, 2)
        self.assertNotIn("STARTTLS", srv.log)
        run = self.run_one(ip, "--tls", "encrypt")   # required: no fallback
        self.assertEqual(run.closed[0]["error"], "tls")


MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = {name}
mydomain = pf.test
myorigin = pf.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
default_transport = discard
local_transport = discard
relay_transport = discard
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_recipient_limit = 1000
maillog_file = /dev/stdout
alias_maps =
alias_database =
biff = no
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
"""


def postfix_usable():
    return (shutil.which("postfix") is not None and os.geteuid() == 0
            and os.path.isdir("/usr/lib/postfix/sbin"))


class PostfixPeer:
    """A private Postfix instance (own config and queue under the world's
    temp dir) whose smtpd listens on ip:port and discards everything."""

    def __init__(self, test, w, ip, name="pf.test"):
        self.dir = w.path("postfix")
        self.etc = os.path.join(self.dir, "etc")
        for d in ("etc", "spool", "data"):
            os.makedirs(os.path.join(self.dir, d))
        os.chmod(w.dir, 0o755)    # the postfix user must reach its dirs
        pw = pwd.getpwnam("postfix")
        os.chown(os.path.join(self.dir, "data"), pw.pw_uid, pw.pw_gid)
        self.cert = w.cert(names=(name,), ips=(ip,))
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(dir=self.dir, name=name,
                                   cert=self.cert.cert, key=self.cert.key))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(listen="%s:%d" % (ip, w.smtp_port)))
        self.log_path = os.path.join(self.dir, "maillog")
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["postfix", "-c", self.etc, "start-fg"],
                                     stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        test.addCleanup(self.stop)
        world.wait_until(lambda: self.accepting(ip, w.smtp_port), timeout=30,
                         what="postfix smtpd listening")

    def accepting(self, ip, port):
        if self.proc.poll() is not None:
            raise RuntimeError("postfix exited: %s" % self.log())
        try:
            socket.create_connection((ip, port), timeout=1).close()
            return True
        except OSError:
            return False

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"],
                       capture_output=True, timeout=60)
        world.stop_process(self.proc)
        pidfile = os.path.join(self.dir, "spool", "pid", "master.pid")
        try:
            with open(pidfile) as f:
                os.kill(int(f.read().strip()), 15)
        except (OSError, ValueError):
            pass
        self.logf.close()


@unittest.skipUnless(postfix_usable(), "postfix not installed (or not root)")
class SmtpClientPostfixTest(unittest.TestCase):
    """Interop with a real Postfix smtpd as the receiving MX."""

    def test_batches_of_100_arrive_as_one_transaction_each(self):
        w = world.World(self)
        ip = "127.0.1.170"
        pf = PostfixPeer(self, w, ip)
        run = send(self, w, [("pf.test", [ip])], "--gen-rcpts", "250",
                   "--gen-domain", "a.test,b.test", "--messages", "2",
                   "--quiet")
        self.assertEqual(run.summary["delivered"], 500)
        self.assertEqual(run.summary["transactions"], 6)
        run = send(self, w, [("pf.test", [ip])], "--rcpt", "tls@a.test",
                   "--tls", "verify", "--ca", pf.cert.ca)
        self.assertEqual(run.statuses(), {"tls@a.test": "delivered"})
        self.assertTrue(run.txns[0]["tls"].startswith("TLS"))

        def counted():
            log = pf.log()
            return log.count("status=sent") >= 501 and log
        log = world.wait_until(counted, timeout=30, what="postfix deliveries")
        nrcpt = sorted(int(n) for n in re.findall(r"nrcpt=(\d+)", log))
        self.assertEqual(nrcpt, [1, 50, 50, 100, 100, 100, 100])
        self.assertEqual(log.count("status=sent"), 501)
        self.assertTrue("starttls=1" in log and "bdat=6" in log,
                        "postfix saw no STARTTLS or not 6 BDAT transactions")


class SmtpClientBigBodyTest(unittest.TestCase):

    def test_100mb_body_streams_with_bounded_memory(self):
        w = world.World(self)
        ip = "127.0.1.160"
        sink = w.sink(ip, {"ehlo": {"size": 200 * 1000 * 1000}})
        path = w.path("big.eml")
        line = b"0123456789" * 7 + b"..\r\n"
        with open(path, "wb") as f:
            f.write(b"Subject: big\r\n\r\n")
            chunk = line * 13797
            for _ in range(100):
                f.write(chunk)
        size = os.path.getsize(path)
        self.assertGreater(size, 100 * 1000 * 1000)
        # under AddressSanitizer freed memory sits in its quarantine (256 MB
        # by default) and would count as ours: keep that small
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"
                               ":thread_local_quarantine_size_kb=64").lstrip(":")
        for opts in ([], ["--no-chunking"]):
            run = send(self, w, [("mx.big.test", [ip])], "--rcpt",
                       "u@big.test", "--body", path, *opts, env=env)
            self.assertEqual(run.statuses(), {"u@big.test": "delivered"})
            # the whole body would be 100 MB; we hold a few chunks
            self.assertLess(run.summary["maxrss_kb"], 40 * 1024, run.summary)
        txns = sink.transactions(status="delivered")
        self.assertEqual([t["body_size"] for t in txns], [size, size])


if __name__ == "__main__":
    unittest.main()
