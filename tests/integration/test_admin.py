"""Admin HTTP API and mxbatchctl against a running mxbatchd.

Every endpoint with real queued mail (delivery paused, or sinks that
delay), authentication and bad input, /metrics through a small
Prometheus text parser, the events stream across reconnects, and
hold/release/delete while a batch is being delivered.
"""
import http.client
import json
import os
import re
import subprocess
import threading
import time
import unittest

import world

CTL = os.path.join(world.BUILD_DIR, "src", "cli", "mxbatchctl")
BODY = b"Subject: admin test\r\nX-Test: 1\r\n\r\nhello\r\n"


def raw_request(port, method, path, body=None, headers=None, timeout=10):
    """One request with exactly these headers: (status, parsed or text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        if body is not None:
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        text = r.read().decode("utf-8", "replace")
    finally:
        c.close()
    try:
        return r.status, json.loads(text)
    except ValueError:
        return r.status, text


def parse_prometheus(text):
    """Prometheus text format -> ({(name, frozenset(labels)): value}, types)."""
    samples, types = {}, {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert name not in types, "duplicate TYPE for %s" % name
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = line_re.match(line)
        assert m, "bad sample line %r" % line
        labels = frozenset(label_re.findall(m.group(3) or ""))
        key = (m.group(1), labels)
        assert key not in samples, "duplicate sample %r" % line
        samples[key] = float(m.group(4))
    return samples, types


def histogram(samples, name):
    """A histogram's ({le: cumulative count}, sum, count), checked for shape."""
    buckets = {}
    for (n, labels), v in samples.items():
        if n == name + "_bucket":
            le = dict(labels)["le"]
            buckets[float("inf") if le == "+Inf" else float(le)] = v
    assert float("inf") in buckets, "%s has no +Inf bucket" % name
    counts = [buckets[k] for k in sorted(buckets)]
    assert counts == sorted(counts), "%s buckets not cumulative" % name
    count = samples[(name + "_count", frozenset())]
    assert buckets[float("inf")] == count, name
    return buckets, samples[(name + "_sum", frozenset())], count


class AdminWorld:
    """A daemon with the admin API; skip when this build has none."""

    @staticmethod
    def daemon(test, w, sections=None):
        d = w.daemon(sections)
        if "admin API listening" not in d.log_text():
            test.skipTest("this mxbatchd does not start the admin API")
        return d


def ids_of(d, **q):
    path = "/v1/messages"
    if q:
        path += "?" + "&".join("%s=%s" % kv for kv in q.items())
    st, res = d.admin("GET", path)
    assert st == 200, (st, res)
    return [m["id"] for m in res["messages"]]


class AuthAndInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = world.World()
        try:
            cls.d = cls.w.daemon({"delivery": {"paused": "yes"}})
        except Exception:
            cls.w.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.w.close()

    def setUp(self):
        if "admin API listening" not in self.d.log_text():
            self.skipTest("this mxbatchd does not start the admin API")

    def auth(self):
        return {"Authorization": "Bearer " + self.d.admin_token()}

    def test_token_file_created_private(self):
        st = os.stat(self.d.token_file)
        self.assertEqual(st.st_mode & 0o777, 0o600)
        self.assertGreaterEqual(len(self.d.admin_token()), 32)

    def test_missing_and_wrong_token(self):
        port = self.d.admin_port
        for headers in ({}, {"Authorization": "Bearer wrong-token-123456789"},
                        {"Authorization": "Basic " + self.d.admin_token()},
                        {"Authorization": "Bearer " + self.d.admin_token()[:-1]},
                        {"Authorization": "Bearer " + self.d.admin_token() + "x"}):
            for path in ("/v1/queue", "/metrics", "/v1/health", "/nope"):
                st, res = raw_request(port, "GET", path, headers=headers)
                self.assertEqual(st, 401, (path, headers))
                self.assertEqual(res["error"], "unauthorized")
        st, res = raw_request(port, "GET", "/v1/health", headers=self.auth())
        self.assertEqual((st, res["status"]), (200, "ok"))

    def test_bad_input_gets_4xx_and_daemon_keeps_serving(self):
        port, h = self.d.admin_port, self.auth()
        cases = [
            ("GET", "/v1/../v1/queue", None, 400),
            ("GET", "/v1/messages/..%2F..%2Fetc%2Fpasswd", None, 400),
            ("GET", "/v1/messages/%2e%2e", None, 400),
            ("GET", "/v1/sites/a%2Fb", None, 400),
            ("GET", "/v1/messages/%00", None, 400),
            ("GET", "/v1//queue", None, 400),
            ("GET", "/v1/messages/xyz", None, 400),
            ("GET", "/v1/messages/0123456789abcdeg", None, 400),
            ("GET", "/v1/messages/0123456789abcdef", None, 404),
            ("POST", "/v1/messages/0123456789abcdef/hold", None, 404),
            ("DELETE", "/v1/messages/0123456789abcdef", None, 404),
            ("POST", "/v1/messages/0123456789abcdef/explode", None, 404),
            ("GET", "/v1/nothing", None, 404),
            ("GET", "/etc/passwd", None, 404),
            ("PUT", "/v1/queue", b"{}", 405),
            ("POST", "/v1/queue", None, 405),
            ("GET", "/v1/messages?limit=abc", None, 400),
            ("GET", "/v1/messages?state=lost", None, 400),
            ("GET", "/v1/events?since=garbage", None, 400),
            ("GET", "/v1/queue?" + "a=b&" * 1000, None, 414),
            ("POST", "/v1/bounce", b"{not json", 400),
            ("POST", "/v1/bounce", b"[1, 2]", 400),
            ("POST", "/v1/bounce", b'{"a": 1, "a": 2}', 400),
            ("POST", "/v1/bounce", b"{}", 400),
            ("POST", "/v1/bounce", b'{"domain": "x.test", "action": "x"}', 400),
            ("POST", "/v1/bounce", b"{" + b" " * 100000 + b"}", 413),
        ]
        for method, path, body, want in cases:
            st, res = raw_request(port, method, path, body=body, headers=h)
            self.assertEqual(st, want, (method, path[:80], res))
            self.assertIn("error", res, (method, path[:80]))
            self.assertIn("detail", res)
        # a body over the hard limit is refused from its Content-Length alone
        import socket
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /v1/bounce HTTP/1.1\r\nHost: x\r\nAuthorization: "
                      + h["Authorization"].encode() + b"\r\nContent-Length: "
                      + str(2 << 20).encode() + b"\r\n\r\n")
            self.assertRegex(s.recv(4096), rb"^HTTP/1\.1 413 ")
        st, res = raw_request(port, "GET", "/v1/health", headers=h)
        self.assertEqual(st, 200)
        self.assertIsNone(self.d.proc.poll())

    def test_long_polls_bounded_and_abandoned_clients(self):
        import socket
        req = ("GET /v1/events?since=end&timeout=3 HTTP/1.1\r\nHost: x\r\n"
               "Authorization: Bearer %s\r\n\r\n" % self.d.admin_token()).encode()
        socks = []
        try:
            for i in range(70):
                s = socket.create_connection(("127.0.0.1", self.d.admin_port), timeout=10)
                s.sendall(req)
                socks.append(s)
            time.sleep(0.5)
            refused = 0
            for s in socks[64:]:  # beyond the bound: answered at once
                self.assertIn(b" 503 ", s.recv(4096))
                refused += 1
            self.assertEqual(refused, 6)
            for s in socks[:32]:  # clients that give up while waiting
                s.close()
            for s in socks[32:64]:  # the others get an empty answer in time
                data = s.recv(4096)
                self.assertIn(b" 200 ", data)
        finally:
            for s in socks:
                s.close()
        with socket.create_connection(("127.0.0.1", self.d.admin_port), timeout=10) as s:
            s.sendall(b"\x16\x03\x01 garbage that is not HTTP\r\n\r\n")
            s.recv(4096)
        st, res = self.d.admin("GET", "/v1/health")
        self.assertEqual(st, 200)
        st, res = self.d.admin("GET", "/v1/events?since=end&timeout=1")
        self.assertEqual((st, res["events"]), (200, []))

    def test_suppressions_and_bulk_removal_on_an_empty_queue(self):
        st, res = self.d.admin("GET", "/v1/suppressions")
        self.assertEqual((st, res["suppressions"]), (200, []))
        st, res = self.d.admin("DELETE", "/v1/suppressions/x%40y.test")
        self.assertEqual((st, res["error"]), (404, "not_found"))
        st, res = self.d.admin("POST", "/v1/bounce", {"domain": "x.test"})
        self.assertEqual((st, res["action"], res["messages"]), (200, "bounce", 0))
        st, res = self.d.admin("POST", "/v1/bounce", {"site": "10:mx.x.test",
                                                      "domain": "x.test"})
        self.assertEqual((st, res["error"]), (404, "unknown_site"))


class SubmissionMetricsTest(unittest.TestCase):
    """Sessions, acceptances and refusals of submission in /metrics."""

    def test_sessions_acceptances_and_rejections_by_reason(self):
        w = world.World(self)
        port = world.free_port()
        d = AdminWorld.daemon(self, w, {
            "delivery": {"paused": "yes"},
            'listen "routing"': {"max_recipients": "3"},
            'listen "local"': {"address": "127.0.0.1:%d" % port,
                               "trusted_networks": "10.0.0.0/8",
                               "max_connections": "1"}})
        self.assertEqual(d.submit("a@src.test", ["r1@x.test", "r2@x.test"], BODY), {})
        with d.smtp() as c:  # one session: syntax, sequence, too many rcpts
            c.ehlo()
            self.assertEqual(c.docmd("RCPT TO:<early@x.test>")[0], 503)
            self.assertEqual(c.docmd("MAIL FROM:<broken")[0], 553)
            self.assertEqual(c.docmd("FROBNICATE")[0], 500)
            self.assertEqual(c.docmd("MAIL FROM:<b@src.test>")[0], 250)
            for i in range(3):
                self.assertEqual(c.docmd("RCPT TO:<k%d@x.test>" % i)[0], 250)
            self.assertEqual(c.docmd("RCPT TO:<k3@x.test>")[0], 452)
            self.assertEqual(c.docmd("DATA")[0], 354)
            c.send(BODY + b".\r\n")
            self.assertEqual(c.getreply()[0], 250)
        with world.RawSmtp(("127.0.0.1", port)) as r:  # trusts nobody here
            self.assertEqual(r.reply()[0], 220)
            self.assertEqual(r.cmd("EHLO c.test")[0], 250)
            self.assertEqual(r.cmd("MAIL FROM:<a@src.test>")[0], 250)
            self.assertEqual(r.cmd("RCPT TO:<v@x.test>")[0], 550)
            with world.RawSmtp(("127.0.0.1", port)) as r2:  # over max_connections
                self.assertEqual(r2.reply()[0], 421)

        def metrics():
            st, text = d.admin("GET", "/metrics")
            self.assertEqual(st, 200)
            samples, types = parse_prometheus(text)
            return samples[("mxbatch_smtpd_sessions_open", frozenset())] == 0 and \
                (samples, types)
        samples, types = world.wait_until(metrics, what="sessions closed")
        one = lambda n: samples[(n, frozenset())]
        self.assertEqual(types["mxbatch_smtpd_rejections_total"], "counter")
        self.assertEqual(one("mxbatch_smtpd_sessions_total"), 3)
        self.assertEqual(one("mxbatch_smtpd_messages_accepted_total"), 2)
        self.assertEqual(one("mxbatch_smtpd_recipients_accepted_total"), 5)
        rej = {dict(l)["reason"]: v for (n, l), v in samples.items()
               if n == "mxbatch_smtpd_rejections_total"}
        want = {"sequence": 1, "syntax": 2, "too_many_recipients": 1,
                "relay_denied": 1, "connections": 1}
        self.assertEqual({k: v for k, v in rej.items() if v}, want)
        for reason in ("auth_failed", "suppressed", "size", "tls_required",
                       "rate_limited"):
            self.assertEqual(rej[reason], 0)


class QueueMessagesTest(unittest.TestCase):
    """Delivery paused: everything stays queued."""

    def setUp(self):
        self.w = world.World(self)
        self.d = AdminWorld.daemon(self, self.w, {"delivery": {"paused": "yes"}})

    def submit(self, sender, rcpts, **kw):
        self.assertEqual(self.d.submit(sender, rcpts, BODY, **kw), {})

    def test_queue_summary_from_counters(self):
        self.submit("a@src.test", ["u1@one.test", "u2@one.test", "u3@two.test"])
        self.submit("b@src.test", ["u4@two.test"])
        st, q = self.d.admin("GET", "/v1/queue")
        self.assertEqual(st, 200)
        self.assertEqual(q["messages"], 2)
        self.assertEqual(q["recipients"]["total"], 4)
        self.assertEqual(q["recipients"]["ready"], 4)
        self.assertEqual(q["recipients"]["held"], 0)
        self.assertEqual(q["totals"]["messages"], 2)
        self.assertEqual(q["oldest"]["id"], ids_of(self.d)[0])
        doms = {t["domain"]: t["recipients"] for t in q["top_domains"]}
        self.assertEqual(doms, {"one.test": 2, "two.test": 2})
        self.assertTrue(q["sample"]["complete"])
        self.submit("c@src.test", ["u5@three.test"])
        st, q = self.d.admin("GET", "/v1/queue")  # sample kept (10 s)
        self.assertEqual((q["messages"], len(q["top_domains"])), (3, 2))
        st, q = self.d.admin("GET", "/v1/queue?refresh=1")
        doms = {t["domain"]: t["recipients"] for t in q["top_domains"]}
        self.assertEqual(doms, {"one.test": 2, "two.test": 2, "three.test": 1})

    def test_list_filters_and_paging(self):
        for i in range(5):
            self.submit("s%d@src.test" % (i % 2), ["r%d@d%d.test" % (i, i % 3)])
        all_ids = ids_of(self.d)
        self.assertEqual(len(all_ids), 5)
        self.assertEqual(all_ids, sorted(all_ids))
        self.assertEqual(len(ids_of(self.d, sender="s0@src.test")), 3)
        self.assertEqual(len(ids_of(self.d, domain="d0.test")), 2)
        self.assertEqual(ids_of(self.d, domain="nowhere.test"), [])
        self.assertEqual(len(ids_of(self.d, state="queued")), 5)
        self.assertEqual(ids_of(self.d, state="held"), [])
        seen, after = [], None
        while True:
            path = "/v1/messages?limit=2" + ("&after=" + after if after else "")
            st, res = self.d.admin("GET", path)
            self.assertEqual(st, 200)
            seen += [m["id"] for m in res["messages"]]
            after = res["next"]
            if after is None:
                break
        self.assertEqual(seen, all_ids)

    def test_message_detail_and_actions(self):
        self.submit("a@src.test", ["x1@one.test", "x2@two.test"],
                    mail_options=["ENVID=batch-7"])
        mid = ids_of(self.d)[0]
        st, m = self.d.admin("GET", "/v1/messages/" + mid)
        self.assertEqual(st, 200)
        self.assertEqual(m["sender"], "a@src.test")
        self.assertEqual(m["envid"], "batch-7")
        self.assertEqual([r["address"] for r in m["recipients"]],
                         ["x1@one.test", "x2@two.test"])
        self.assertEqual({r["state"] for r in m["recipients"]}, {"queued"})
        self.assertIn("Subject: admin test", m["headers"])
        self.assertNotIn("hello", m["headers"])

        st, res = self.d.admin("POST", "/v1/messages/%s/hold" % mid)
        self.assertEqual((st, res["action"]), (200, "hold"))
        st, q = self.d.admin("GET", "/v1/queue")
        self.assertEqual(q["recipients"]["held"], 2)
        self.assertEqual(ids_of(self.d, state="held"), [mid])
        st, m = self.d.admin("GET", "/v1/messages/" + mid)
        self.assertTrue(m["held"])
        self.assertEqual({r["state"] for r in m["recipients"]}, {"held"})

        st, res = self.d.admin("POST", "/v1/messages/%s/release" % mid)
        self.assertEqual(st, 200)
        st, q = self.d.admin("GET", "/v1/queue")
        self.assertEqual(q["recipients"]["held"], 0)
        self.assertEqual(q["recipients"]["ready"], 2)

        st, res = self.d.admin("POST", "/v1/messages/%s/retry-now" % mid)
        self.assertEqual((st, res["recipients"]), (200, 0))  # none deferred

        st, res = self.d.admin("DELETE", "/v1/messages/%016x?bounce=1" % 1)
        self.assertEqual(st, 404)  # bouncing: test_bounce_notify.py
        st, res = self.d.admin("DELETE", "/v1/messages/" + mid)
        self.assertEqual(st, 200)
        st, res = self.d.admin("GET", "/v1/messages/" + mid)
        self.assertEqual(st, 404)
        st, q = self.d.admin("GET", "/v1/queue")
        self.assertEqual((q["messages"], q["recipients"]["total"]), (0, 0))
        self.assertEqual(q["totals"]["deleted"], 2)
        acts = [r for r in self.d.delivery_records() if r["event"] == "AdminAction"]
        self.assertEqual([a["action"] for a in acts],
                         ["hold", "release", "retry-now", "delete", "delete"])
        dels = [a for a in acts if a["action"] == "delete"]
        self.assertEqual(sorted(a["recipient"] for a in dels),
                         ["x1@one.test", "x2@two.test"])
        self.assertEqual({(a["by"], a["terminal"], a["envid"], a["id"]) for a in dels},
                         {("admin", True, "batch-7", mid)})
        st, res = self.d.admin("GET", "/v1/events?terminal=1&envid=batch-7")
        self.assertEqual(len(res["events"]), 2)
        log = self.d.log_text()
        self.assertIn("admin action by admin: hold message", log)
        self.assertIn("admin action by admin: delete message", log)

    def test_bulk_delete_by_domain(self):
        self.submit("a@src.test", ["k1@gone.test", "k2@stay.test"])
        self.submit("a@src.test", ["k3@gone.test"])
        st, res = self.d.admin("POST", "/v1/bounce",
                               {"domain": "gone.test", "action": "delete"})
        self.assertEqual(st, 200, res)
        self.assertEqual((res["messages"], res["recipients"]), (2, 2))
        dels = [r["recipient"] for r in self.d.delivery_records()
                if r["event"] == "AdminAction"]
        self.assertEqual(sorted(dels), ["k1@gone.test", "k3@gone.test"])
        st, q = self.d.admin("GET", "/v1/queue")
        self.assertEqual((q["messages"], q["recipients"]["total"]), (1, 1))
        st, m = self.d.admin("GET", "/v1/messages/" + ids_of(self.d)[0])
        self.assertEqual([r["address"] for r in m["recipients"]], ["k2@stay.test"])

    def test_named_tokens_are_audited(self):
        self.submit("a@src.test", ["z@one.test"])
        mid = ids_of(self.d)[0]
        restart_prepare(self.d)
        with open(self.d.token_file, "w") as f:
            f.write("# operators\nalice:%s\nbob:%s\n" % ("a" * 40, "b" * 40))
        os.chmod(self.d.token_file, 0o600)
        self.d.start()
        for tok, want in (("a" * 40, 200), ("b" * 40, 200), ("alice:" + "a" * 40, 401)):
            st, _ = raw_request(self.d.admin_port, "GET", "/v1/health",
                                headers={"Authorization": "Bearer " + tok})
            self.assertEqual(st, want, tok)
        st, _ = raw_request(self.d.admin_port, "POST", "/v1/messages/%s/hold" % mid,
                            headers={"Authorization": "Bearer " + "b" * 40})
        self.assertEqual(st, 200)
        self.assertIn("admin action by bob: hold message", self.d.log_text())

    def test_token_file_in_a_new_directory(self):
        restart_prepare(self.d)
        self.d.token_file = self.w.path("secrets", "admin", "token")
        self.d.sections["admin"]["token_file"] = self.d.token_file
        self.d.start()
        self.assertEqual(os.stat(self.d.token_file).st_mode & 0o777, 0o600)
        st, _ = self.d.admin("GET", "/v1/health")
        self.assertEqual(st, 200)

    def test_group_readable_token_file_refused(self):
        restart_prepare(self.d)
        os.chmod(self.d.token_file, 0o640)
        with self.assertRaises(RuntimeError):
            self.d.start()
        self.assertNotEqual(self.d.proc.wait(10), 0)
        self.assertIn("chmod 600", self.d.log_text())
        restart_prepare(self.d)
        os.chmod(self.d.token_file, 0o600)
        self.d.start()
        st, _ = self.d.admin("GET", "/v1/health")
        self.assertEqual(st, 200)


@unittest.skipIf(os.geteuid() != 0, "needs root")
class TokenOwnerTest(unittest.TestCase):
    USER = "mxbtest"  # made by test_reliability_privilege.py when missing

    def test_new_token_file_belongs_to_the_run_user(self):
        import pwd
        try:
            pw = pwd.getpwnam(self.USER)
        except KeyError:
            self.skipTest("no user %s" % self.USER)
        if not os.path.exists(CTL):
            self.skipTest("mxbatchctl not built")
        w = world.World(self)
        os.chmod(w.dir, 0o755)
        d = w.daemon({"server": {"user": self.USER},
                      "delivery": {"paused": "yes"}}, start=False)
        os.chmod(d.dir, 0o777)
        d.start()
        if "admin API listening" not in d.log_text():
            self.skipTest("this mxbatchd does not start the admin API")
        st = os.stat(d.token_file)
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (pw.pw_uid, 0o600))
        p = subprocess.run([CTL, "-c", d.config_path, "health"], capture_output=True,
                           text=True, timeout=30,
                           preexec_fn=lambda: (os.setgid(pw.pw_gid), os.setuid(pw.pw_uid)))
        self.assertEqual(p.returncode, 0, p.stderr)


def restart_prepare(d):
    """Stop d and forget its output, so start() waits for the new run."""
    d.stop()
    open(d.out_path, "w").close()


class DeliveryTest(unittest.TestCase):
    """Real delivery to sinks: sites, metrics, events, actions in flight."""

    IP = "127.0.1.71"

    def setUp(self):
        self.w = world.World(self)
        self.w.dns.add_mx("batch.test", [(10, "mx.batch.test")])
        self.w.dns.add_mx("other.test", [(10, "mx.batch.test")])
        self.w.dns.add_a("mx.batch.test", self.IP)
        self.w.dns.start()

    def start(self, sink_config=None, sections=None):
        self.sink = self.w.sink(self.IP, config=sink_config or {})
        s = {"delivery": {"retry_schedule": "1s"}}
        s.update(sections or {})
        self.d = AdminWorld.daemon(self, self.w, s)

    def wait_empty(self, timeout=30):
        def empty():
            st, q = self.d.admin("GET", "/v1/queue")
            return q["messages"] == 0 and q
        return world.wait_until(empty, timeout=timeout, what="empty queue")

    def test_sites_and_metrics_match_sinks(self):
        self.start({"max_rcpts": 3, "max_rcpts_reply": "452 4.5.3 Too many"},
                   {'site "default"': {"idle_timeout": "1s"}})
        sizes = [1, 2, 5, 3, 7]
        n = 0
        for i, k in enumerate(sizes):
            rc = ["m%d-%d@%s" % (i, j, "batch.test" if j % 2 else "other.test")
                  for j in range(k)]
            n += k
            self.assertEqual(self.d.submit("s@src.test", rc, BODY), {})
        q = self.wait_empty()
        self.assertEqual(q["totals"]["delivered"], n)
        self.assertEqual(sorted(self.sink.delivered()),
                         sorted(set(self.sink.delivered())))
        self.assertEqual(len(self.sink.delivered()), n)

        st, res = self.d.admin("GET", "/v1/sites")
        self.assertEqual(st, 200)
        keys = [s["site"] for s in res["sites"]]
        self.assertEqual(len(keys), 1, res)
        site = keys[0]
        st, one = self.d.admin("GET", "/v1/sites/" + urlq(site))
        self.assertEqual(st, 200)
        self.assertEqual(one["counters"]["delivered"], n)
        self.assertEqual(one["mx"][0]["addresses"], [self.IP])

        st, text = self.d.admin("GET", "/metrics")
        self.assertEqual(st, 200)
        samples, types = parse_prometheus(text)
        self.assertEqual(types["mxbatch_sched_recipients_per_transaction"], "histogram")
        txns = [t for t in self.sink.transactions() if t["status"] == "delivered"]
        per_txn = [len(t["rcpts"]) for t in txns]
        h = "mxbatch_sched_recipients_per_transaction"
        self.assertEqual(samples[(h + "_count", frozenset())], len(per_txn))
        self.assertEqual(samples[(h + "_sum", frozenset())], sum(per_txn))
        buckets = {dict(l)["le"]: v for (name, l), v in samples.items()
                   if name == h + "_bucket"}
        for le, v in buckets.items():
            bound = float("inf") if le == "+Inf" else float(le)
            self.assertEqual(v, len([k for k in per_txn if k <= bound]), le)
        self.assertEqual(samples[("mxbatch_recipients_total",
                                  frozenset({("outcome", "delivered")}))], n)
        self.assertEqual(samples[("mxbatch_queue_messages", frozenset())], 0)
        # the store: every accepted message and outcome went through a
        # commit round, each round timed once
        rounds = samples[("mxbatch_store_rounds_total", frozenset())]
        _, ops, count = histogram(samples, "mxbatch_store_round_operations")
        self.assertEqual(count, rounds)
        self.assertGreaterEqual(ops, len(sizes) + len(txns))
        self.assertGreaterEqual(rounds, 2)
        _, secs, count = histogram(samples, "mxbatch_store_sync_seconds")
        self.assertEqual(count, rounds)
        self.assertGreater(secs, 0)
        self.assertEqual(samples[("mxbatch_store_rounds_failed_total", frozenset())], 0)
        lbl = frozenset({("site", site), ("provider", "")})
        self.assertEqual(samples[("mxbatch_site_delivered_total", lbl)], n)
        self.assertEqual(samples[("mxbatch_site_transactions_total", lbl)],
                         len(self.sink.transactions()))
        for cls in ("recipient", "connection", "reputation"):
            self.assertIn(("mxbatch_site_deferrals_total", lbl | {("class", cls)}),
                          samples)
        # the same histogram per site (one site here), and messages per
        # connection once the idle connections closed
        hs = "mxbatch_site_recipients_per_transaction"
        self.assertEqual(types[hs], "histogram")
        for le, v in buckets.items():
            self.assertEqual(samples[(hs + "_bucket", lbl | {("le", le)})], v, le)
        self.assertEqual(samples[(hs + "_count", lbl)], len(per_txn))
        self.assertEqual(samples[(hs + "_sum", lbl)], sum(per_txn))
        world.wait_until(lambda: self.sink.open_connections() == 0, timeout=10,
                         what="idle connections closed")
        conns = [c["transactions"] for c in self.sink.connections()]
        self.assertGreater(sum(conns), 0)
        hm = "mxbatch_site_messages_per_connection"

        def mpc():
            st, text = self.d.admin("GET", "/metrics")
            smp, _ = parse_prometheus(text)
            return smp.get((hm + "_count", lbl)) == len(conns) and smp
        smp = world.wait_until(mpc, timeout=10, what="every closed connection counted")
        self.assertEqual(smp[(hm + "_sum", lbl)], sum(conns))
        self.assertEqual(smp[(hm + "_bucket", lbl | {("le", "+Inf")})], len(conns))
        self.assertEqual(smp[(hm + "_bucket", lbl | {("le", "1")})],
                         len([k for k in conns if k <= 1]))
        for name, kind in types.items():
            self.assertIn(kind, ("counter", "gauge", "histogram"), name)
            if kind == "counter":
                self.assertTrue(name.endswith("_total"), name)

        st, res = self.d.admin("POST", "/v1/sites/%s/suspend" % urlq(site),
                               {"duration": "10m", "reason": "maintenance"})
        self.assertEqual(st, 200, res)
        self.assertTrue(res["state"]["suspended"])
        self.assertIn("maintenance", res["state"]["reason"])
        st, res = self.d.admin("POST", "/v1/sites/%s/resume" % urlq(site))
        self.assertEqual(st, 200)
        self.assertFalse(res["state"]["suspended"])
        st, res = self.d.admin("POST", "/v1/sites/%s/retry-now" % urlq(site))
        self.assertEqual(st, 200)
        st, res = self.d.admin("POST", "/v1/sites/unknown.site/resume")
        self.assertEqual(st, 404)
        st, res = self.d.admin("GET", "/v1/sites/unknown.site")
        self.assertEqual(st, 404)
        st, res = self.d.admin("POST", "/v1/sites/%s/suspend" % urlq(site),
                               {"duration": "soon"})
        self.assertEqual(st, 400)

    def test_events_exactly_once_across_reconnects(self):
        self.start()
        want = set()
        for i in range(6):
            rc = ["e%d-%d@batch.test" % (i, j) for j in range(4)]
            want |= set(rc)
            self.assertEqual(self.d.submit("s@src.test", rc, BODY,
                                           mail_options=["ENVID=env-%d" % (i % 2)]), {})
        self.wait_empty()
        world.wait_until(lambda: len([r for r in self.d.delivery_records()
                                      if r.get("event") == "Delivery"]) >= len(want),
                         what="delivery log lines")
        got, cursor = [], None
        for _ in range(100):  # one connection per page: limit 5
            path = "/v1/events?limit=5&terminal=1" + ("&since=" + cursor if cursor else "")
            st, res = self.d.admin("GET", path)
            self.assertEqual(st, 200, res)
            got += res["events"]
            cursor = res["cursor"]
            if not res["events"]:
                break
        rcpts = [e["recipient"] for e in got]
        self.assertEqual(sorted(rcpts), sorted(want))  # every one, once
        st, res = self.d.admin("GET", "/v1/events?since=" + cursor)
        self.assertEqual(res["events"], [])

        st, res = self.d.admin("GET", "/v1/events?envid=env-1&terminal=1")
        self.assertEqual(len(res["events"]), 12)
        self.assertEqual({e["envid"] for e in res["events"]}, {"env-1"})

        # long-poll: a waiting request gets the next event as it happens
        box = {}

        def poll():
            box["r"] = self.d.admin("GET", "/v1/events?terminal=1&timeout=20&since="
                                    + cursor, timeout=30)
        t = threading.Thread(target=poll)
        t.start()
        time.sleep(0.5)
        self.assertTrue(t.is_alive())
        self.assertEqual(self.d.submit("s@src.test", ["late@batch.test"], BODY), {})
        t.join(30)
        st, res = box["r"]
        self.assertEqual(st, 200)
        self.assertEqual([e["recipient"] for e in res["events"]], ["late@batch.test"])
        st, res = self.d.admin("GET", "/v1/events?timeout=1&since=" + res["cursor"])
        self.assertEqual((st, res["events"]), (200, []))

    def test_events_follow_a_rotated_log(self):
        self.start()
        self.assertEqual(self.d.submit("s@src.test", ["r1@batch.test"], BODY), {})
        self.wait_empty()
        st, res = self.d.admin("GET", "/v1/events?terminal=1")
        self.assertEqual([e["recipient"] for e in res["events"]], ["r1@batch.test"])
        cursor = res["cursor"]
        self.assertEqual(self.d.submit("s@src.test", ["r2@batch.test"], BODY), {})
        self.wait_empty()
        world.wait_until(lambda: len(self.d.delivery_records()) >= 2, what="2 lines")
        os.rename(self.d.delivery_log, self.d.delivery_log + ".1")  # logrotate
        self.assertEqual(self.d.submit("s@src.test", ["r3@batch.test"], BODY), {})
        self.wait_empty()  # r3 still goes to the renamed file: no SIGHUP yet
        self.d.reload()
        world.wait_until(lambda: os.path.exists(self.d.delivery_log), what="new log")
        self.assertEqual(self.d.submit("s@src.test", ["r4@batch.test"], BODY), {})
        self.wait_empty()
        got = []
        for _ in range(10):
            st, res = self.d.admin("GET", "/v1/events?terminal=1&limit=1&since=" + cursor)
            self.assertFalse(res["reset"])
            got += [e["recipient"] for e in res["events"]]
            cursor = res["cursor"]
            if len(got) == 3:
                break
        self.assertEqual(got, ["r2@batch.test", "r3@batch.test", "r4@batch.test"])
        st, res = self.d.admin("GET", "/v1/events?since=" + cursor)
        self.assertEqual(res["events"], [])
        st, res = self.d.admin("GET", "/v1/events?since=1-2-3")  # unknown file
        self.assertTrue(res["reset"])

    def ctl(self, *args, expect=0):
        if not os.path.exists(CTL):
            self.skipTest("mxbatchctl not built")
        p = subprocess.run([CTL, "-c", self.d.config_path] + list(args),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, expect, (args, p.stdout, p.stderr))
        return p.stdout, p.stderr

    def test_cli_sites_and_events(self):
        self.start()
        if not os.path.exists(CTL):
            self.skipTest("mxbatchctl not built")
        follow = subprocess.Popen([CTL, "-c", self.d.config_path, "events", "--follow",
                                   "--terminal", "--json", "--since", "end"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)
        self.addCleanup(lambda: (follow.poll() is None and follow.kill(),
                                 follow.wait(), follow.stdout.close()))
        time.sleep(0.5)
        rc = ["c%d@batch.test" % j for j in range(3)]
        self.assertEqual(self.d.submit("s@src.test", rc, BODY), {})
        self.wait_empty()
        seen = [json.loads(follow.stdout.readline())["recipient"] for _ in rc]
        self.assertEqual(sorted(seen), rc)

        out, err = self.ctl("events", "--terminal", "--json")
        self.assertEqual(sorted(json.loads(l)["recipient"] for l in out.splitlines()), rc)
        cursor = re.search(r"cursor (\S+)", err).group(1)
        out, _ = self.ctl("events", "--since", cursor)
        self.assertEqual(out, "")

        out, _ = self.ctl("sites")
        site = json.loads(self.ctl("--json", "sites")[0])["sites"][0]["site"]
        self.assertIn(site, out)
        out, _ = self.ctl("site", site)
        self.assertIn(self.IP, out)
        out, _ = self.ctl("suspend", site, "--for", "10m", "--reason", "cli test")
        self.assertIn("suspend", out)
        out, _ = self.ctl("sites")
        self.assertRegex(out, r"suspended: .*cli test")
        self.ctl("resume", site)
        self.ctl("retry-site", site)
        out, _ = self.ctl("sites")
        self.assertIn("active", out)

    def test_retry_now_of_a_deferred_message(self):
        self.start({"rcpt_rules": [{"match": "later", "reply": "451 4.2.0 try later"}]},
                   {"delivery": {"retry_schedule": "1h"}})
        self.assertEqual(self.d.submit("s@src.test", ["later@batch.test", "now@batch.test"],
                                       BODY), {})
        mid = ids_of(self.d)[0]

        def deferred():
            st, m = self.d.admin("GET", "/v1/messages/" + mid)
            return st == 200 and [r for r in m["recipients"] if r["state"] == "deferred"]
        rc = world.wait_until(deferred, timeout=20, what="a deferred recipient")
        self.assertEqual([r["address"] for r in rc], ["later@batch.test"])
        self.assertEqual(rc[0]["last_reply"]["code"], 451)
        self.assertEqual(rc[0]["attempts"], 1)
        self.assertEqual(ids_of(self.d, state="deferred"), [mid])
        st, q = self.d.admin("GET", "/v1/queue?x=1")
        self.assertEqual(q["recipients"]["deferred"], 1)
        self.sink.reconfigure({})
        st, res = self.d.admin("POST", "/v1/messages/%s/retry-now" % mid)
        self.assertEqual((st, res["recipients"]), (200, 1))
        q = self.wait_empty(timeout=20)
        self.assertEqual(sorted(self.sink.delivered()), ["later@batch.test", "now@batch.test"])
        self.assertEqual(q["totals"]["delivered"], 2)

    def test_hold_then_release_during_delivery(self):
        self.start({"delay_ms": {"dot": 1500}})
        rc = ["h%d@batch.test" % j for j in range(10)]
        self.assertEqual(self.d.submit("s@src.test", rc, BODY), {})
        mid = ids_of(self.d)[0]
        world.wait_until(lambda: self.sink.open_connections() > 0, what="connection")
        st, res = self.d.admin("POST", "/v1/messages/%s/hold" % mid)
        self.assertEqual(st, 200)
        time.sleep(2)
        st, res = self.d.admin("POST", "/v1/messages/%s/release" % mid)
        self.assertIn(st, (200, 404))  # 404: it was delivered while held
        q = self.wait_empty()
        self.assertEqual(sorted(self.sink.delivered()), sorted(rc))
        self.assertEqual(q["totals"]["delivered"], len(rc))
        self.assertEqual(q["recipients"]["total"], 0)

    def terminal_lines(self, rcpts):
        """recipient -> its terminal delivery-log lines, once every one of
        rcpts has at least one"""
        def lines():
            out = {r: [] for r in rcpts}
            for rec in self.d.delivery_records():
                if rec.get("recipient") in out and (
                        rec["event"] in ("Delivery", "Bounce", "Expiration") or
                        (rec["event"] == "AdminAction" and rec.get("terminal"))):
                    out[rec["recipient"]].append(rec)
            return all(out.values()) and out
        return world.wait_until(lines, timeout=20, what="a terminal line each")

    def test_delete_during_delivery(self):
        """A delete while the message's transaction is open: what the MX
        accepted is delivered, the rest is deleted, each recipient has one
        terminal line, and the counters agree with the sink."""
        self.start({"delay_ms": {"dot": 1500},
                    "rcpt_rules": [{"match": "later", "reply": "451 4.2.0 try later"}]},
                   {"delivery": {"retry_schedule": "1h"}})
        rc = ["x%d@batch.test" % j for j in range(10)]
        later = ["later%d@other.test" % j for j in range(3)]
        self.assertEqual(self.d.submit("s@src.test", rc + later, BODY), {})
        mid = ids_of(self.d)[0]
        world.wait_until(lambda: self.sink.open_connections() > 0, what="connection")
        time.sleep(0.5)  # into the 1.5 s the sink waits at the final dot
        st, res = self.d.admin("DELETE", "/v1/messages/" + mid)
        self.assertEqual((st, res["action"]), (200, "delete"), res)
        q = self.wait_empty()
        # normally the x* went out in the open transaction (a loaded machine
        # may be slower: then nothing was sent and all 13 are deleted)
        sent = sorted(self.sink.delivered())
        self.assertIn(sent, ([], sorted(rc)))
        self.assertEqual(res["recipients"], len(rc + later) - len(sent))
        t = q["totals"]
        self.assertEqual((t["delivered"], t["deleted"]), (len(sent), 13 - len(sent)))
        lines = self.terminal_lines(rc + later)
        time.sleep(1)  # a second line would come with the transaction's end
        lines = self.terminal_lines(rc + later)
        for r in rc + later:
            self.assertEqual(len(lines[r]), 1, (r, lines[r]))
            if r in sent:
                self.assertEqual(lines[r][0]["event"], "Delivery")
            else:
                self.assertEqual((lines[r][0]["event"], lines[r][0]["action"],
                                  lines[r][0]["by"]), ("AdminAction", "delete", "admin"))
        st, res = self.d.admin("GET", "/v1/health")
        self.assertEqual(st, 200)

    def test_bounce_and_delete_by_site(self):
        """POST /v1/bounce by site: the recipients of the domains that site
        serves go, the others stay; bounce sends one DSN per message."""
        self.w.dns.add_mx("elsewhere.test", [(10, "mx.elsewhere.test")])
        self.w.dns.add_a("mx.elsewhere.test", "127.0.1.72")
        self.w.dns.reload()
        self.start({"rcpt_rules": [{"match": "later", "reply": "451 4.2.0 try later"}]},
                   {"delivery": {"retry_schedule": "1h"}})
        far = self.w.sink("127.0.1.72", config={"rcpt_rules": [
            {"match": "@", "reply": "451 4.2.0 not now"}]})
        self.assertEqual(self.d.submit("owner@other.test", ["later1@batch.test",
                         "later2@other.test", "k1@elsewhere.test"], BODY), {})
        self.assertEqual(self.d.submit("owner@other.test", ["later3@batch.test"], BODY), {})

        def deferred():
            st, q = self.d.admin("GET", "/v1/queue")
            return q["recipients"]["deferred"] == 4
        world.wait_until(deferred, timeout=20, what="4 deferred recipients")
        st, res = self.d.admin("GET", "/v1/sites")
        site = [s["site"] for s in res["sites"] if "mx.batch.test" in s["site"]][0]
        st, res = self.d.admin("POST", "/v1/bounce", {"site": "nope", "action": "delete"})
        self.assertEqual((st, res["error"]), (404, "unknown_site"))
        st, res = self.d.admin("POST", "/v1/bounce", {"site": site, "action": "bounce"})
        self.assertEqual((st, res["messages"], res["recipients"]), (200, 2, 3), res)
        lines = self.terminal_lines(["later1@batch.test", "later2@other.test",
                                     "later3@batch.test"])
        for r, ls in lines.items():
            self.assertEqual([(x["event"], x["enhanced"], x["by"]) for x in ls],
                             [("Bounce", "5.0.0", "admin")], r)
        # one DSN per message, to the sender, at the sink of other.test
        world.wait_until(lambda: self.sink.delivered().count("owner@other.test") == 2,
                         timeout=20, what="two DSNs")
        # the recipient at the other site is still queued; delete it by site
        st, m = self.d.admin("GET", "/v1/queue")
        self.assertEqual(m["recipients"]["total"], 1)
        st, res = self.d.admin("GET", "/v1/sites")
        other = [s["site"] for s in res["sites"] if "mx.elsewhere.test" in s["site"]][0]
        p = subprocess.run([CTL, "-c", self.d.config_path, "bounce", "--site", other,
                            "--delete"], capture_output=True, text=True, timeout=30)
        self.assertEqual((p.returncode, p.stdout), (0, "deleted: 1 recipients of 1 messages\n"),
                         p.stderr)
        lines = self.terminal_lines(["k1@elsewhere.test"])
        self.assertEqual([x["event"] for x in lines["k1@elsewhere.test"]], ["AdminAction"])
        self.wait_empty()
        self.assertEqual(far.delivered(), [])


class SiteDetailTest(unittest.TestCase):
    """Two sites: a site's domains, last hour and replies; ?site= filter."""

    A, B = "127.0.1.73", "127.0.1.74"

    def test_site_history_and_site_filter(self):
        w = world.World(self)
        w.dns.add_mx("batch.test", [(10, "mx.batch.test")])
        w.dns.add_mx("other.test", [(10, "mx.batch.test")])
        w.dns.add_mx("far.test", [(10, "mx.far.test")])
        w.dns.add_a("mx.batch.test", self.A)
        w.dns.add_a("mx.far.test", self.B)
        w.dns.start()
        sa = w.sink(self.A, config={"rcpt_rules": [
            {"match": "rej", "reply": "550 5.1.1 No such user here"},
            {"match": "later", "reply": "451 4.2.0 Try again later"}]})
        w.sink(self.B, config={"rcpt_rules": [
            {"match": "@", "reply": "452 4.2.2 Mailbox full"}]})
        d = AdminWorld.daemon(self, w, {"delivery": {"retry_schedule": "1h"}})
        for rc in (["ok1@batch.test", "ok2@other.test", "rej@batch.test",
                    "later@batch.test"], ["g1@far.test"], ["ok3@batch.test", "g2@far.test"]):
            self.assertEqual(d.submit("", rc, BODY), {})  # <>: no DSN joins the queue
        m1, m2, m3 = ids_of(d)

        def settled():
            st, q = d.admin("GET", "/v1/queue")
            return q["recipients"]["deferred"] == 3 and q["recipients"]["total"] == 3
        world.wait_until(settled, timeout=30, what="3 deferred recipients")
        self.assertEqual(sorted(sa.delivered()), ["ok1@batch.test", "ok2@other.test",
                                                  "ok3@batch.test"])
        st, res = d.admin("GET", "/v1/sites")
        self.assertEqual(sorted(s["site"] for s in res["sites"]),
                         ["10:mx.batch.test", "10:mx.far.test"])
        st, a = d.admin("GET", "/v1/sites/" + urlq("10:mx.batch.test"))
        self.assertEqual(st, 200)
        self.assertEqual(a["domains"], ["batch.test", "other.test"])
        self.assertTrue(a["domains_complete"])
        self.assertEqual(len(a["per_minute"]), 60)
        tot = {k: sum(m[k] for m in a["per_minute"])
               for k in ("delivered", "failed", "deferred")}
        self.assertEqual(tot, {"delivered": 3, "failed": 1, "deferred": 1})
        reps = a["last_replies"]
        by = {}
        for r in reps:
            self.assertEqual(r["mx"], "mx.batch.test")
            by.setdefault(r["outcome"], []).append(r)
        self.assertEqual(sum(r["count"] for r in by["delivered"]), 3)
        self.assertEqual({r["code"] for r in by["delivered"]}, {250})
        (f,), (df,) = by["failed"], by["deferred"]
        self.assertEqual((f["code"], f["enhanced"], f["count"]), (550, "5.1.1", 1))
        self.assertIn("No such user here", f["text"])
        self.assertTrue(f["category"])
        self.assertEqual((df["code"], df["enhanced"]), (451, "4.2.0"))
        self.assertIn("Try again later", df["text"])
        times = [r["time_ms"] for r in reps]
        self.assertEqual(times, sorted(times, reverse=True))  # newest first

        st, b = d.admin("GET", "/v1/sites/" + urlq("10:mx.far.test"))
        self.assertEqual(b["domains"], ["far.test"])
        self.assertEqual(sum(m["deferred"] for m in b["per_minute"]), 2)
        self.assertEqual([(r["code"], r["enhanced"], r["outcome"]) for r in b["last_replies"]],
                         [(452, "4.2.2", "deferred")] * len(b["last_replies"]))
        self.assertEqual(sum(r["count"] for r in b["last_replies"]), 2)

        # ?site=: messages with a queued recipient whose domain that site serves
        self.assertEqual(ids_of(d, site=urlq("10:mx.batch.test")), [m1])
        self.assertEqual(ids_of(d, site=urlq("10:mx.far.test")), [m2, m3])
        self.assertEqual(ids_of(d, site=urlq("10:mx.far.test"), domain="far.test"), [m2, m3])
        self.assertEqual(ids_of(d, site=urlq("10:mx.far.test"), domain="batch.test"), [])
        st, res = d.admin("GET", "/v1/messages?site=" + urlq("10:mx.far.test"))
        self.assertEqual([m["recipients_matching"] for m in res["messages"]], [1, 1])
        st, res = d.admin("GET", "/v1/messages?site=no.such.site")
        self.assertEqual((st, res["error"]), (404, "unknown_site"))

        if not os.path.exists(CTL):
            return
        p = subprocess.run([CTL, "-c", d.config_path, "site", "10:mx.batch.test"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("domains: batch.test other.test", p.stdout)
        self.assertRegex(p.stdout, r"total +3 +1 +1")
        self.assertRegex(p.stdout, r"failed +mx\.batch\.test .* 550 5\.1\.1 No such user")
        p = subprocess.run([CTL, "-c", d.config_path, "messages", "--site", "10:mx.far.test"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(re.findall(r"^([0-9a-f]{16}) ", p.stdout, re.M), [m2, m3])


def urlq(s):
    import urllib.parse
    return urllib.parse.quote(s, safe="")


class CliTest(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(CTL):
            self.skipTest("mxbatchctl not built")
        self.w = world.World(self)
        self.d = AdminWorld.daemon(self, self.w, {"delivery": {"paused": "yes"}})
        for i in range(3):
            self.assertEqual(self.d.submit("c%d@src.test" % i,
                                           ["r%d@cli.test" % i, "q@cli2.test"], BODY), {})

    def ctl(self, *args, expect=0):
        p = subprocess.run([CTL, "-c", self.d.config_path] + list(args),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, expect, (args, p.stdout, p.stderr))
        return p.stdout, p.stderr

    def test_commands(self):
        out, _ = self.ctl("queue")
        self.assertIn("messages 3", out)
        self.assertIn("cli2.test", out)
        out, _ = self.ctl("--json", "queue")
        self.assertEqual(json.loads(out)["recipients"]["total"], 6)
        out, _ = self.ctl("messages")
        ids = re.findall(r"^([0-9a-f]{16}) ", out, re.M)
        self.assertEqual(len(ids), 3)
        out, _ = self.ctl("messages", "--sender", "c1@src.test", "--json")
        self.assertEqual([m["id"] for m in json.loads(out)["messages"]], [ids[1]])
        out, _ = self.ctl("messages", "--domain", "cli.test", "--limit", "2")
        self.assertIn("more: --after " + ids[1], out)
        out, _ = self.ctl("message", ids[0])
        self.assertIn("r0@cli.test", out)
        self.assertIn("Subject: admin test", out)
        self.ctl("hold", ids[0])
        out, _ = self.ctl("messages", "--state", "held")
        self.assertEqual(re.findall(r"^([0-9a-f]{16}) ", out, re.M), [ids[0]])
        self.ctl("release", ids[0])
        self.ctl("retry", ids[0])
        self.ctl("delete", ids[0])
        _, err = self.ctl("message", ids[0], expect=1)
        self.assertIn("404", err)
        out, _ = self.ctl("bounce", "--domain", "cli2.test", "--delete")
        self.assertIn("deleted: 2 recipients of 2 messages", out)
        out, _ = self.ctl("bounce", "--domain", "cli.test")
        self.assertIn("bounced: 2 recipients of 2 messages", out)
        out, _ = self.ctl("messages", "--sender", "c1@src.test")
        self.assertNotRegex(out, r"(?m)^[0-9a-f]{16} ")
        self.ctl("suppressions")
        out, _ = self.ctl("sites")
        self.assertIn("SITE", out)
        self.ctl("site", "no.such.site", expect=1)
        self.ctl("suspend", "no.such.site", "--for", "10m", expect=1)
        out, _ = self.ctl("health")
        self.assertIn("status: ok", out)
        out, _ = self.ctl("metrics")
        parse_prometheus(out)
        out, err = self.ctl("events")
        self.assertRegex(err, r"cursor [0-9a-f]+-[0-9a-f]+-\d+")

    def test_usage_and_connection_errors(self):
        self.ctl(expect=2)
        self.ctl("frobnicate", expect=2)
        self.ctl("hold", expect=2)
        self.ctl("hold", "a", "b", expect=2)
        self.ctl("bounce", expect=2)
        self.ctl("--bogus", "queue", expect=2)
        self.ctl("message", "nothex", expect=1)
        p = subprocess.run([CTL, "--url", "http://127.0.0.1:%d" % world.free_port(),
                            "--token-file", self.d.token_file, "queue"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot connect", p.stderr)
        bad = self.w.path("bad.token")
        with open(bad, "w") as f:
            f.write("x" * 40 + "\n")
        p = subprocess.run([CTL, "-c", self.d.config_path, "--token-file", bad, "queue"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("401", p.stderr)

    def test_events_follow(self):
        p = subprocess.Popen([CTL, "-c", self.d.config_path, "events", "--follow",
                              "--json"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait()))
        time.sleep(1)
        self.assertIsNone(p.poll())
        p.terminate()
        p.wait(10)


if __name__ == "__main__":
    unittest.main()
