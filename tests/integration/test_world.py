"""Tests of the test world itself: dnsmasq zones, the MX sink, certificates.

If these pass, a failing feature test is not the test world's fault. Each
record kind DnsWorld generates is queried with the stdlib DNS client; the
sink is driven by real clients (smtplib, swaks) and each fault mode checked
from both sides (what the client saw, what the sink logged).
"""
import os
import time
import unittest

import world


class DnsWorldTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = world.World()
        d = cls.w.dns
        d.add_mx("ex.test", [(10, "mx1.ex.test"), (20, "mx2.ex.test")])
        d.add_a("mx1.ex.test", ["127.0.1.5", "127.0.1.6"], ttl=60)
        d.add_aaaa("mx1.ex.test", "::1", ttl=61)
        d.add_null_mx("null.test")
        d.add_nxdomain_zone("nx.test")
        d.add_servfail("sf.test")
        d.add_timeout("slow.test")
        d.add_txt("2.0.0.127.zen.test", ["listed", "see https://zen.test/"])
        d.add_a("2.0.0.127.zen.test", "127.0.0.2")
        d.add_cname("www.ex.test", "mx1.ex.test")
        d.start()

    @classmethod
    def tearDownClass(cls):
        cls.w.close()

    def q(self, name, qtype, timeout=2.0):
        a = self.w.dns.query(name, qtype, timeout=timeout)
        self.assertIsNotNone(a, "no answer for %s %s" % (name, qtype))
        return a

    def test_mx_with_preferences(self):
        a = self.q("ex.test", "MX")
        self.assertEqual(a.rcode, "NOERROR")
        self.assertEqual(sorted(a.values("MX")),
                         [(10, "mx1.ex.test"), (20, "mx2.ex.test")])
        self.assertEqual({r[2] for r in a.records}, {300})

    def test_a_and_aaaa_with_ttl(self):
        a = self.q("mx1.ex.test", "A")
        self.assertEqual(sorted(a.values("A")), ["127.0.1.5", "127.0.1.6"])
        self.assertEqual({r[2] for r in a.records}, {60})
        a6 = self.q("mx1.ex.test", "AAAA")
        self.assertEqual(a6.values("AAAA"), ["::1"])
        self.assertEqual(a6.records[0][2], 61)

    def test_nodata_for_other_types(self):
        a = self.q("ex.test", "A")
        self.assertEqual((a.rcode, a.records), ("NOERROR", []))
        a = self.q("2.0.0.127.zen.test", "AAAA")
        self.assertEqual((a.rcode, a.records), ("NOERROR", []))
        # an MX target with no address record of its own does not exist
        self.assertEqual(self.q("mx2.ex.test", "AAAA").rcode, "NXDOMAIN")

    def test_null_mx(self):
        a = self.q("null.test", "MX")
        self.assertEqual(a.values("MX"), [(0, "")])

    def test_nxdomain(self):
        for name in ("nx.test", "a.b.nx.test", "unknown.example"):
            self.assertEqual(self.q(name, "MX").rcode, "NXDOMAIN", name)

    def test_servfail(self):
        self.assertEqual(self.q("sf.test", "MX").rcode, "SERVFAIL")
        self.assertEqual(self.q("mx.sf.test", "A").rcode, "SERVFAIL")

    def test_timeout(self):
        self.assertIsNone(self.w.dns.query("slow.test", "MX", timeout=0.5))

    def test_txt_and_dnsbl_a(self):
        a = self.q("2.0.0.127.zen.test", "TXT")
        self.assertEqual(a.values("TXT"), [["listed", "see https://zen.test/"]])
        self.assertEqual(self.q("2.0.0.127.zen.test", "A").values("A"),
                         ["127.0.0.2"])

    def test_cname(self):
        a = self.q("www.ex.test", "A")
        self.assertEqual(a.values("CNAME"), ["mx1.ex.test"])
        self.assertIn("127.0.1.5", a.values("A"))

    def test_query_count(self):
        before = self.w.dns.query_count("count.ex.test", "A")
        for _ in range(3):
            self.q("count.ex.test", "A")
        self.q("count.ex.test", "MX")
        world.wait_until(
            lambda: self.w.dns.query_count("count.ex.test") == before + 4,
            timeout=5, what="query log")
        self.assertEqual(self.w.dns.query_count("count.ex.test", "A"),
                         before + 3)


class DnsReloadTest(unittest.TestCase):
    def test_fix_servfail_by_reload(self):
        w = world.World(self)
        w.dns.add_servfail("fixme.test").add_null_mx("gone.test").start()
        port = w.dns.port
        self.assertEqual(w.dns.query("fixme.test", "MX").rcode, "SERVFAIL")
        w.dns.remove("fixme.test").add_mx("fixme.test", [(5, "mx.fixme.test")])
        w.dns.remove("gone.test")
        w.dns.reload()
        self.assertEqual(w.dns.port, port)
        self.assertEqual(w.dns.query("fixme.test", "MX").values("MX"),
                         [(5, "mx.fixme.test")])
        self.assertEqual(w.dns.query("gone.test", "MX").rcode, "NXDOMAIN")
        self.assertEqual(w.dns.query_count("fixme.test", "MX"), 2)

    def test_bad_name_refused(self):
        d = world.DnsWorld(world.tempfile.mkdtemp(prefix="mxb-dnsbad-"))
        self.addCleanup(world.shutil.rmtree, d.dir, True)
        with self.assertRaises(ValueError):
            d.add_mx("bad,name.test", [(1, "x.test")])
        with self.assertRaises(OSError):
            d.add_a("x.test", "999.1.1.1")


if __name__ == "__main__":
    unittest.main()
