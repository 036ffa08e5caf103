#!/usr/bin/env python3
"""e2e_crash.py [KILLS] [CLIENTS] [SEED] - the long end-to-end crash test:
the scenario of tests/integration/test_reliability_crash.py with 100+
kill -9 of mxbatchd during submission and delivery (default 120 kills,
3 clients). Prints a line per kill and a JSON report; exits 1 if an
acknowledged recipient was lost or a duplicate has no kill to explain it.

Needs a build: MXB_BUILD_DIR (default build/) as for the integration tests.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.chdir(os.path.join(HERE, "..", "integration"))

import test_reliability_crash as crash  # noqa: E402


class LongCrash(unittest.TestCase):
    def test_long(self):
        a = sys.argv[1:]
        kills = int(a[0]) if a else 120
        clients = int(a[1]) if len(a) > 1 else 3
        seed = int(a[2]) if len(a) > 2 else None
        rep = crash.crash_run(self, kills=kills, clients=clients, seed=seed,
                              min_gap=0.1, max_gap=2.0, drain_timeout=300,
                              log=lambda m: print(m, flush=True))
        print("e2e_crash report:", rep, flush=True)


if __name__ == "__main__":
    r = unittest.TextTestRunner(verbosity=2).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(LongCrash))
    sys.exit(0 if r.wasSuccessful() else 1)
