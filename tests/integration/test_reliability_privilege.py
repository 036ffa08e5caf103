"""Least privilege: started as root with [server] user, mxbatchd binds its
doors and then runs (every thread) as that user; the spool is mode 0700 and
owned by it; the admin token file is created 0600 and one readable by
group or others is refused at start.

Needs root and a test user (mxbtest, created with useradd if missing);
skipped otherwise.
"""
import os
import pwd
import stat
import subprocess
import unittest

from world import World, wait_until

USER = "mxbtest"


def run_user():
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                    "/usr/sbin/nologin", USER], capture_output=True)
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        return None


def ids(path):
    """(real, effective, saved, fs) uids and gids of /proc/.../status"""
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid"):
                out[k] = tuple(int(x) for x in v.split())
            if k == "Groups":
                out[k] = tuple(int(x) for x in v.split())
    return out


@unittest.skipIf(os.geteuid() != 0, "needs root")
class TestPrivilege(unittest.TestCase):

    def setUp(self):
        self.pw = run_user()
        if self.pw is None:
            self.skipTest("cannot create user %s" % USER)
        self.w = World(self)
        os.chmod(self.w.dir, 0o755)   # the run user reaches its files

    def test_binds_then_runs_as_the_configured_user(self):
        w = self.w
        w.dns.add_mx("dest.test", [(10, "mx.dest.test")])
        w.dns.add_a("mx.dest.test", "127.0.1.101")
        w.dns.start()
        sink = w.sink("127.0.1.101")
        d = w.daemon({"server": {"user": USER},
                      "delivery": {"retry_schedule": "1s"}}, start=False)
        os.chmod(d.dir, 0o777)
        d.start()
        self.assertIn("running as user %s" % USER, d.log_text())
        pid = d.proc.pid
        uid, gid = self.pw.pw_uid, self.pw.pw_gid
        tasks = os.listdir("/proc/%d/task" % pid)
        self.assertGreater(len(tasks), 1)
        for t in tasks:
            st = ids("/proc/%d/task/%s/status" % (pid, t))
            self.assertEqual(st["Uid"], (uid,) * 4, "thread %s" % t)
            self.assertEqual(st["Gid"], (gid,) * 4, "thread %s" % t)
            self.assertEqual(st["Groups"], (gid,), "thread %s" % t)
        spool = os.stat(d.sections["spool"]["path"])
        self.assertEqual((spool.st_uid, spool.st_gid), (uid, gid))
        self.assertEqual(stat.S_IMODE(spool.st_mode), 0o700)
        for name in os.listdir(d.sections["spool"]["path"]):
            self.assertEqual(os.stat(os.path.join(d.sections["spool"]["path"],
                                                  name)).st_uid, uid, name)
        tok = os.stat(d.token_file)
        self.assertEqual(stat.S_IMODE(tok.st_mode) & 0o077, 0)
        # the doors bound as root still work: submit, deliver, admin API
        self.assertEqual(d.submit("s@src.test", ["x@dest.test"],
                                  b"Subject: priv\r\n\r\nhi\r\n"), {})
        wait_until(lambda: "x@dest.test" in sink.delivered(), timeout=20)
        status, _ = d.admin("GET", "/v1/health")
        self.assertEqual(status, 200)
        self.assertEqual(d.stop(), 0)

    def test_world_readable_token_file_refused(self):
        d = self.w.daemon(start=False)
        with open(d.token_file, "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        os.chmod(d.token_file, 0o644)
        with self.assertRaises(RuntimeError):
            d.start(timeout=20)
        self.assertEqual(d.proc.returncode, 1, d.log_text())
        self.assertIn(d.token_file, d.log_text())
        self.assertFalse(os.path.exists(d.routing_socket) and
                         d.proc.poll() is None)

    def test_root_as_run_user_refused(self):
        d = self.w.daemon({"server": {"user": "root"}}, start=False)
        with self.assertRaises(RuntimeError):
            d.start(timeout=20)
        self.assertEqual(d.proc.returncode, 1)
        self.assertIn("unprivileged", d.log_text())


if __name__ == "__main__":
    unittest.main()
