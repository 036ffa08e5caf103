"""Daemon lifecycle: defaults, config errors, pid file, signals.

Runs the real mxbatchd in a temporary directory and checks what an operator
would see: where it listens, how a bad file is refused (file, line and key
named), that a second instance on the same spool is refused, and that SIGTERM
ends it with status 0 within a few seconds.
"""
import os
import signal
import subprocess
import tempfile
import time
import unittest

BUILD = os.environ.get("MXB_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
DAEMON = os.path.join(BUILD, "mxbatchd")


class DaemonTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="mxb-daemon-")
        self.addCleanup(self.dir.cleanup)
        self.procs = []
        self.addCleanup(self._kill_all)

    def _kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def start(self, *args, config_text=None):
        argv = [DAEMON, "--foreground"]
        if config_text is not None:
            path = os.path.join(self.dir.name, "mxbatch.conf")
            with open(path, "w") as f:
                f.write(config_text)
            argv += ["--config", path]
        argv += list(args)
        log = open(os.path.join(self.dir.name, "daemon.log"), "ab")
        p = subprocess.Popen(argv, cwd=self.dir.name, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(p)
        return p

    def log_text(self):
        with open(os.path.join(self.dir.name, "daemon.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return
            time.sleep(0.05)
        self.fail("daemon never logged %r; log:\n%s" % (needle, self.log_text()))

    def stop(self, p, timeout=10):
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("mxbatchd did not exit within %ss of SIGTERM" % timeout)

    def test_defaults_start_and_sigterm(self):
        p = self.start()
        self.wait_log("mxbatchd started")
        pid_file = os.path.join(self.dir.name, "var", "mxbatchd.pid")
        with open(pid_file) as f:
            self.assertEqual(int(f.read().strip()), p.pid)
        spool = os.path.join(self.dir.name, "var", "spool")
        self.assertEqual(os.stat(spool).st_mode & 0o777, 0o700)
        self.assertEqual(self.stop(p), 0)
        self.assertIn("stopped", self.log_text())
        self.assertFalse(os.path.exists(pid_file), "pid file left behind")

    def test_second_instance_refused(self):
        first = self.start()
        self.wait_log("mxbatchd started")
        second = self.start()
        self.assertEqual(second.wait(timeout=20), 1)
        self.assertIn("another mxbatchd (pid %d)" % first.pid, self.log_text())
        self.assertEqual(self.stop(first), 0)

    def test_sighup_keeps_running(self):
        p = self.start()
        self.wait_log("mxbatchd started")
        p.send_signal(signal.SIGHUP)
        self.wait_log("SIGHUP")
        self.assertIsNone(p.poll())
        self.assertEqual(self.stop(p), 0)

    def refused(self, text, expect):
        p = self.start(config_text=text)
        self.assertEqual(p.wait(timeout=20), 1)
        out = self.log_text()
        self.assertIn(expect, out)
        self.assertIn("configuration refused", out)
        self.assertNotIn("mxbatchd started", out)

    def test_unknown_key_refused(self):
        self.refused("[server]\nhostname = a.example\ncolour = blue\n",
                     "mxbatch.conf:3: [server] colour: unknown key")

    def test_bad_value_refused(self):
        self.refused("[site \"default\"]\nconnections = many\n",
                     "mxbatch.conf:2: [site \"default\"] connections: 'many' is not a non-negative integer")

    def test_bad_duration_refused(self):
        self.refused("[spool]\nqueue_lifetime = 5 fortnights\n",
                     "mxbatch.conf:2: [spool] queue_lifetime: '5 fortnights' is not a duration")

    def test_check_config(self):
        path = os.path.join(self.dir.name, "ok.conf")
        with open(path, "w") as f:
            f.write("[dns]\nservers = 127.0.0.1:5353\n[site \"*.example.net\"]\nconnections = 2\n")
        r = subprocess.run([DAEMON, "--check-config", path], capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("servers = 127.0.0.1:5353", r.stdout)
        self.assertIn('[site "*.example.net"]', r.stdout)
        self.assertIn("queue_lifetime = 5d", r.stdout)
        with open(path, "a") as f:
            f.write("[delivery]\nconnect_timeout = soon\n")
        r = subprocess.run([DAEMON, "--check-config", path], capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 1)
        self.assertIn("ok.conf:6: [delivery] connect_timeout: 'soon' is not a duration", r.stderr)

    def test_check_config_output_loads_again(self):
        """What --check-config prints is itself a valid configuration."""
        r = subprocess.run([DAEMON, "--check-config", "/dev/null"], capture_output=True,
                           text=True, timeout=20)
        path = os.path.join(self.dir.name, "dumped.conf")
        with open(path, "w") as f:
            f.write(r.stdout)
        r2 = subprocess.run([DAEMON, "--check-config", path], capture_output=True,
                            text=True, timeout=20)
        self.assertEqual(r2.returncode, 0, r2.stderr)
        self.assertEqual(r2.stdout.splitlines()[1:], r.stdout.splitlines()[1:])

    def test_every_option_documented(self):
        """docs/configuration.md lists every option the daemon knows."""
        r = subprocess.run([DAEMON, "--check-config", "/dev/null"], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        src = os.environ.get("MXB_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
        with open(os.path.join(src, "docs", "configuration.md")) as f:
            doc = f.read()
        section, missing = None, []
        for line in r.stdout.splitlines():
            if line.startswith("["):
                section = line
                if section.startswith(("[listen", "[site", "[pool")):
                    section = section.split(" ")[0] + "]"
                    section = None if section != "[site]" else section
            elif "=" in line and not line.startswith(";") and section is not None:
                key = line.split("=", 1)[0].strip()
                if "| `%s` |" % key not in doc:
                    missing.append("%s %s" % (section, key))
        self.assertEqual(missing, [], "regenerate with contrib/gen-config-doc.py")


if __name__ == "__main__":
    unittest.main()
