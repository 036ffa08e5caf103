#!/usr/bin/env python3
"""e2e_soak.py [SECONDS] [CLIENTS] - the long soak (contrib/soak.sh): submit
at about 80 % of the measured maximum rate for SECONDS (default 600) with
one slow site (200 ms per reply) among four fast ones; print RSS, open fds
and p99 submission latency every 10 s and a summary (start/end/max).
Exits 1 if a submitted recipient never arrived or the sockets did not
return to their idle count. MXB_BUILD_DIR as for the integration tests.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.chdir(os.path.join(HERE, "..", "integration"))

import test_reliability_soak as soak  # noqa: E402


class LongSoak(unittest.TestCase):
    def test_long(self):
        a = sys.argv[1:]
        s = soak.soak_run(self, duration=int(a[0]) if a else 600,
                          clients=int(a[1]) if len(a) > 1 else 4,
                          measure=10, sample_every=10)
        self.assertEqual(s["errors"], 0)
        self.assertLessEqual(s["fds"]["sockets_after"], s["fds"]["sockets_idle"])


if __name__ == "__main__":
    r = unittest.TextTestRunner(verbosity=2).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(LongSoak))
    sys.exit(0 if r.wasSuccessful() else 1)
