"""test_dns.py - mxbatch's DNS glue (src/mxsched dns.c, resolve.c,
sitekey.c) against a real dnsmasq, through the mxresolve tool.

Each test builds its zones in a fresh World (tests/integration/world.py),
runs tests/tools/mxresolve against that dnsmasq and checks what a user of
the engine would see: which exchangers, in which order, with which
addresses, which failures are permanent or temporary, and how many
queries reached the DNS server (its query log).
"""
import json
import os
import subprocess
import unittest

from world import World, SOURCE_DIR, tool_path

MXRESOLVE = tool_path("mxresolve")
PROVIDERS = os.path.join(SOURCE_DIR, "contrib", "providers.conf")


class DnsCase(unittest.TestCase):
    ttl = 300

    def setUp(self):
        if not os.path.exists(MXRESOLVE):
            self.fail("%s not built" % MXRESOLVE)
        self.world = World(self, ttl=self.ttl)
        self.dns = self.world.dns

    def mxresolve(self, *args, timeout="500ms", tries=1, check=True):
        """Run mxresolve against the world's dnsmasq; (answers, stats)."""
        cmd = [MXRESOLVE, "--server", self.dns.server, "--timeout", timeout,
               "--tries", str(tries)] + [str(a) for a in args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check:
            self.assertEqual(p.returncode, 0, "mxresolve failed: %s\n%s"
                             % (p.stderr, p.stdout))
        lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
        stats = [l["stats"] for l in lines if "stats" in l]
        return [l for l in lines if "stats" not in l], \
            (stats[0] if stats else None)

    def resolve(self, domain, *args):
        answers, _ = self.mxresolve(*(list(args) + [domain]))
        self.assertEqual(len(answers), 1)
        return answers[0]


class TestResolution(DnsCase):
    """RFC 5321 section 5 and RFC 7505 outcomes."""

    def test_mx_preferences_and_addresses(self):
        self.dns.add_mx("pref.test", [(20, "c.mx.pref.test"),
                                      (10, "b.mx.pref.test"),
                                      (10, "a.mx.pref.test")])
        self.dns.add_a("a.mx.pref.test", ["127.0.1.1"])
        self.dns.add_a("b.mx.pref.test", ["127.0.1.2", "127.0.1.3"])
        self.dns.add_aaaa("b.mx.pref.test", ["::1"])
        self.dns.add_a("c.mx.pref.test", ["127.0.1.4"])
        self.dns.add_a("pref.test", ["127.0.1.99"])  # must never be used
        self.dns.start()
        r = self.resolve("Pref.Test.", "--repeat", 200)
        self.assertEqual(r["status"], "ok")
        self.assertEqual(r["domain"], "pref.test")
        self.assertFalse(r["implicit_mx"])
        self.assertEqual([m["pref"] for m in r["mx"]], [10, 10, 20])
        self.assertEqual(r["mx"][2]["name"], "c.mx.pref.test")
        by_name = {m["name"]: m["addresses"] for m in r["mx"]}
        self.assertEqual(sorted(by_name["b.mx.pref.test"]),
                         ["127.0.1.2", "127.0.1.3", "::1"])
        self.assertEqual(by_name["a.mx.pref.test"], ["127.0.1.1"])
        self.assertEqual(r["site_key"],
                         "10:a.mx.pref.test,b.mx.pref.test;20:c.mx.pref.test")
        # equal preferences are shuffled per use: over 200 answers both
        # pref-10 hosts come first, the pref-20 host never does
        self.assertEqual(r["answers"], 200)
        self.assertEqual(set(r["first_mx"]),
                         {"a.mx.pref.test", "b.mx.pref.test"})
        self.assertGreater(min(r["first_mx"].values()), 20)
        # MX present: the domain's own address is never looked up
        self.assertEqual(self.dns.query_count("pref.test", "A"), 0)
        self.assertNotIn("127.0.1.99", json.dumps(r))

    def test_implicit_mx(self):
        self.dns.add_a("implicit.test", ["127.0.1.7"])
        self.dns.add_aaaa("implicit.test", ["::1"])
        self.dns.start()
        r = self.resolve("implicit.test")
        self.assertEqual(r["status"], "ok")
        self.assertTrue(r["implicit_mx"])
        self.assertEqual(len(r["mx"]), 1)
        self.assertEqual(r["mx"][0]["name"], "implicit.test")
        self.assertEqual(r["mx"][0]["pref"], 0)
        self.assertEqual(r["mx"][0]["addresses"], ["127.0.1.7", "::1"])
        self.assertEqual(r["site_key"], "0:implicit.test")

    def test_aaaa_only_exchanger(self):
        self.dns.add_mx("six.test", [(10, "mx.six.test")])
        self.dns.add_aaaa("mx.six.test", ["2001:db8::25"])
        self.dns.start()
        r = self.resolve("six.test")
        self.assertEqual(r["status"], "ok")
        self.assertEqual(r["mx"][0]["addresses"], ["2001:db8::25"])
        # and with IPv6 switched off the site has no usable address
        r = self.resolve("six.test", "--no-ipv6")
        self.assertEqual(r["status"], "temp")
        self.assertEqual(self.dns.query_count("mx.six.test", "AAAA"), 1)

    def test_null_mx_is_permanent(self):
        self.dns.add_null_mx("nullmx.test")
        self.dns.add_a("nullmx.test", ["127.0.1.8"])
        self.dns.start()
        r = self.resolve("nullmx.test")
        self.assertEqual(r["status"], "perm")
        self.assertEqual(r["code"], 556)
        self.assertEqual(r["enhanced"], "5.1.10")
        self.assertTrue(r["reason"].startswith("556 5.1.10 "))
        self.assertTrue(r["null_mx"])
        self.assertEqual(r["mx"], [])
        self.assertEqual(self.dns.query_count("nullmx.test", "A"), 0)
        self.assertEqual(self.dns.query_count("nullmx.test", "AAAA"), 0)

    def test_nxdomain_is_permanent(self):
        self.dns.start()
        r = self.resolve("no-such-domain.test")
        self.assertEqual(r["status"], "perm")
        self.assertEqual(r["code"], 550)
        self.assertEqual(r["enhanced"], "5.1.2")
        self.assertIn("does not exist", r["reason"])
        self.assertEqual(self.dns.query_count("no-such-domain.test"), 1)

    def test_servfail_is_temporary_then_fixed_after_reload(self):
        self.dns.add_servfail("broken.test")
        self.dns.start()
        r = self.resolve("broken.test")
        self.assertEqual(r["status"], "temp")
        self.assertEqual(r["code"], 451)
        self.assertIn("SERVFAIL", r["reason"])
        self.dns.remove("broken.test")
        self.dns.add_mx("broken.test", [(10, "mx.broken.test")])
        self.dns.add_a("mx.broken.test", ["127.0.1.9"])
        self.dns.reload()
        r = self.resolve("broken.test")
        self.assertEqual(r["status"], "ok")
        self.assertEqual(r["mx"][0]["addresses"], ["127.0.1.9"])

    def test_timeout_is_temporary(self):
        self.dns.add_timeout("silent.test")
        self.dns.start()
        r = self.resolve("silent.test")
        self.assertEqual(r["status"], "temp")
        self.assertIn("TIMEOUT", r["reason"])

    def test_exchangers_without_addresses_are_temporary(self):
        self.dns.add_mx("noaddr.test", [(10, "mx1.noaddr.test"),
                                        (20, "mx2.noaddr.test")])
        self.dns.add_txt("mx2.noaddr.test", ["exists, but no address"])
        self.dns.add_mx("literal.test", [(10, "192.0.2.1")])
        self.dns.start()
        r = self.resolve("noaddr.test")
        self.assertEqual(r["status"], "temp")
        self.assertEqual(r["enhanced"], "4.4.4")
        self.assertIn("mx1.noaddr.test", r["reason"])
        # an MX naming an IP address is not looked up as a host name
        r = self.resolve("literal.test")
        self.assertEqual(r["status"], "temp")
        self.assertIn("IP address", r["reason"])
        self.assertEqual(self.dns.query_count("192.0.2.1"), 0)

    def test_one_exchanger_without_address_is_skipped(self):
        self.dns.add_mx("half.test", [(10, "dead.half.test"),
                                      (20, "live.half.test")])
        self.dns.add_a("live.half.test", ["127.0.1.10"])
        self.dns.start()
        r = self.resolve("half.test")
        self.assertEqual(r["status"], "ok")
        self.assertEqual(r["mx"][0]["name"], "dead.half.test")
        self.assertEqual(r["mx"][0]["addresses"], [])
        self.assertIn("error", r["mx"][0])
        self.assertEqual(r["mx"][1]["addresses"], ["127.0.1.10"])

    def test_cname_targets(self):
        # an MX host that is an alias (RFC 2181 10.3 says it should not be)
        # and a domain that is an alias of another one
        self.dns.add_mx("alias.test", [(10, "mx-alias.alias.test")])
        self.dns.add_cname("mx-alias.alias.test", "real.alias.test")
        self.dns.add_a("real.alias.test", ["127.0.1.11"])
        self.dns.add_cname("www.alias.test", "alias.test")
        self.dns.start()
        r = self.resolve("alias.test")
        self.assertEqual(r["status"], "ok")
        self.assertEqual(r["mx"][0]["addresses"], ["127.0.1.11"])
        r = self.resolve("www.alias.test")
        self.assertEqual(r["status"], "ok")
        self.assertEqual(r["mx"][0]["name"], "mx-alias.alias.test")

    def test_internationalized_domain(self):
        self.dns.add_mx("xn--bcher-kva.test", [(10, "mx.xn--bcher-kva.test")])
        self.dns.add_a("mx.xn--bcher-kva.test", ["127.0.1.23"])
        self.dns.start()
        r = self.resolve("B\u00fccher.test")
        self.assertEqual(r["status"], "ok")
        self.assertEqual(r["domain"], "xn--bcher-kva.test")
        self.assertEqual(r["mx"][0]["addresses"], ["127.0.1.23"])

    def test_invalid_names_are_refused_without_a_query(self):
        self.dns.start()
        answers, _ = self.mxresolve("--", "bad..name.test", "-lead.test",
                                    "sp ace.test", "x" * 64 + ".test")
        self.assertEqual([a["status"] for a in answers], ["perm"] * 4)
        self.assertTrue(all(a["enhanced"] == "5.1.3" for a in answers))
        self.assertEqual([q for q in self.dns.query_log()
                          if q[1] != "mxb-ready.invalid"], [])

    def test_bad_server_setting_is_a_clear_error(self):
        self.dns.start()
        p = subprocess.run([MXRESOLVE, "--server", "dns.example:53",
                            "x.test"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not an IP address", p.stderr)


class TestCache(DnsCase):
    """TTLs, negative caching, coalescing of concurrent lookups."""
    ttl = 1

    def test_ttl_honoured_then_expired(self):
        self.dns.add_mx("ttl.test", [(10, "mx.ttl.test")])
        self.dns.add_a("mx.ttl.test", ["127.0.1.12"], ttl=1)
        self.dns.start()
        # TTL 1 s, no floor: the second lookup, 1.5 s later, asks again
        answers, stats = self.mxresolve("--min-ttl", "0", "--passes", 2,
                                        "--pause", "1500ms", "ttl.test")
        self.assertEqual([a["status"] for a in answers], ["ok", "ok"])
        self.assertEqual(self.dns.query_count("ttl.test", "MX"), 2)
        self.assertEqual(self.dns.query_count("mx.ttl.test", "A"), 2)

    def test_min_ttl_clamp_keeps_the_answer(self):
        self.dns.add_mx("clamp.test", [(10, "mx.clamp.test")])
        self.dns.add_a("mx.clamp.test", ["127.0.1.13"], ttl=1)
        self.dns.start()
        answers, stats = self.mxresolve("--min-ttl", "60s", "--passes", 2,
                                        "--pause", "1500ms", "clamp.test")
        self.assertEqual([a["status"] for a in answers], ["ok", "ok"])
        self.assertEqual(self.dns.query_count("clamp.test", "MX"), 1)
        self.assertEqual(self.dns.query_count("mx.clamp.test", "A"), 1)
        self.assertGreaterEqual(stats["cache_hits"], 3)
        self.assertGreater(answers[1]["ttl_ms"], 50000)

    def test_negative_answers_are_cached(self):
        self.dns.add_null_mx("nullc.test")
        self.dns.start()
        answers, _ = self.mxresolve("--passes", 3, "--pause", "10ms",
                                    "gone.test", "nullc.test")
        self.assertEqual([a["status"] for a in answers], ["perm"] * 6)
        self.assertEqual(self.dns.query_count("gone.test", "MX"), 1)
        self.assertEqual(self.dns.query_count("nullc.test", "MX"), 1)

    def test_concurrent_lookups_share_one_query(self):
        self.dns.add_mx("burst.test", [(10, "mx1.shared.test"),
                                       (20, "mx2.shared.test")])
        self.dns.add_mx("burst2.test", [(10, "mx1.shared.test"),
                                        (20, "mx2.shared.test")])
        self.dns.add_a("mx1.shared.test", ["127.0.1.14"])
        self.dns.add_a("mx2.shared.test", ["127.0.1.15"])
        self.dns.start()
        answers, stats = self.mxresolve("--repeat", 1000, "burst.test",
                                        "burst2.test")
        for a in answers:
            self.assertEqual(a["status"], "ok")
            self.assertEqual(a["answers"], 1000)
            self.assertTrue(a["all_same"])
        # one site for both domains, one query per record
        self.assertEqual(answers[0]["site_key"], answers[1]["site_key"])
        self.assertEqual(self.dns.query_count("burst.test", "MX"), 1)
        self.assertEqual(self.dns.query_count("burst2.test", "MX"), 1)
        self.assertEqual(self.dns.query_count("mx1.shared.test", "A"), 1)
        self.assertEqual(self.dns.query_count("mx2.shared.test", "AAAA"), 1)
        self.assertEqual(stats["requests"], 2000)
        self.assertEqual(stats["coalesced"], 1998)

    def test_cancelled_requests_get_no_answer(self):
        self.dns.add_a("cancel.test", ["127.0.1.16"])
        self.dns.start()
        answers, stats = self.mxresolve("--repeat", 10, "--cancel-every", 2,
                                        "cancel.test")
        self.assertEqual(answers[0]["answers"], 5)
        self.assertEqual(stats["ok"], 5)


class TestQueries(DnsCase):
    """The generic A/TXT queries a DNSBL monitor needs, and providers."""

    def test_dnsbl_style_a_and_txt(self):
        self.dns.add_a("2.0.0.127.bl.test", ["127.0.0.2"])
        self.dns.add_txt("2.0.0.127.bl.test",
                         ["Listed: see https://bl.test/2"])
        self.dns.add_a("2.0.0.127.refuse.test", ["127.255.255.254"])
        self.dns.start()
        answers, _ = self.mxresolve("--query", "a", "2.0.0.127.bl.test",
                                    "3.0.0.127.bl.test",
                                    "2.0.0.127.refuse.test")
        by = {a["name"]: a for a in answers}
        self.assertEqual(by["2.0.0.127.bl.test"]["status"], "OK")
        self.assertEqual(by["2.0.0.127.bl.test"]["records"], ["127.0.0.2"])
        self.assertEqual(by["2.0.0.127.bl.test"]["ttl"], 300)
        self.assertEqual(by["3.0.0.127.bl.test"]["status"], "NXDOMAIN")
        self.assertFalse(by["3.0.0.127.bl.test"]["temporary"])
        self.assertEqual(by["2.0.0.127.refuse.test"]["records"],
                         ["127.255.255.254"])
        answers, _ = self.mxresolve("--query", "txt", "2.0.0.127.bl.test")
        self.assertEqual(answers[0]["records"],
                         ["Listed: see https://bl.test/2"])

    def test_large_answer_over_tcp(self):
        # 600 bytes of TXT do not fit a 512-byte UDP answer: dnsmasq
        # truncates, c-ares retries over TCP through the same event glue
        parts = [("%d" % i) * 200 for i in range(1, 4)]
        self.dns.add_txt("big.bl.test", parts)
        self.dns.start()
        answers, _ = self.mxresolve("--query", "txt", "big.bl.test")
        self.assertEqual(answers[0]["status"], "OK")
        self.assertEqual(answers[0]["records"], ["".join(parts)])

    def test_query_failures_are_classified(self):
        self.dns.add_servfail("sf.bl.test")
        self.dns.add_timeout("to.bl.test")
        self.dns.add_txt("nodata.bl.test", ["x"])
        self.dns.start()
        answers, _ = self.mxresolve("--query", "a", "x.sf.bl.test",
                                    "x.to.bl.test", "nodata.bl.test")
        by = {a["name"]: a for a in answers}
        self.assertEqual(by["x.sf.bl.test"]["status"], "SERVFAIL")
        self.assertEqual(by["x.to.bl.test"]["status"], "TIMEOUT")
        self.assertTrue(by["x.to.bl.test"]["temporary"])
        self.assertEqual(by["nodata.bl.test"]["status"], "NODATA")

    def test_provider_of_a_site(self):
        self.dns.add_mx("gm.test", [(1, "aspmx.l.google.com"),
                                    (5, "alt1.aspmx.l.google.com")])
        self.dns.add_a("aspmx.l.google.com", ["127.0.1.20"])
        self.dns.add_a("alt1.aspmx.l.google.com", ["127.0.1.21"])
        self.dns.add_mx("own.test", [(10, "mx.own.test")])
        self.dns.add_a("mx.own.test", ["127.0.1.22"])
        self.dns.start()
        answers, _ = self.mxresolve("--providers", PROVIDERS, "gm.test",
                                    "own.test")
        by = {a["domain"]: a for a in answers}
        self.assertEqual(by["gm.test"]["provider"], "google")
        self.assertEqual(by["gm.test"]["site_key"],
                         "1:aspmx.l.google.com;5:alt1.aspmx.l.google.com")
        self.assertIsNone(by["own.test"]["provider"])


if __name__ == "__main__":
    unittest.main()
