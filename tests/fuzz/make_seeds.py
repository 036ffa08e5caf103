#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/).

Run once after changing the seeds; the files are committed. Crash inputs
found later are added to the same folders by hand (name: crash-<what>).
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def smtpd():
    cmds = [
        "MAIL FROM:<a@example.com>", "MAIL FROM:<> SIZE=100 BODY=8BITMIME",
        "MAIL FROM:<a@example.com> RET=HDRS ENVID=abc+2Bdef SMTPUTF8",
        "MAIL FROM:<@route.test,@x.test:a@example.com> AUTH=<>",
        'MAIL FROM:<"john..doe smith"@example.com>',
        "MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8",
        "MAIL FROM:<a@[192.0.2.1]>", "MAIL FROM:<a@[IPv6:2001:db8::1]>",
        'MAIL FROM:<a@example.com> X="""""""""',
        "MAIL FROM:<a@example.com> SIZE=184467440737095516160",
        "RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+40example.net",
        "RCPT TO:<b@example.net> NOTIFY=NEVER", "RCPT TO:<postmaster>",
        "BDAT 100 LAST", "BDAT 18446744073709551616 LAST",
        "AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH LOGIN YWxpY2U=",
        "EHLO client.test", "DATA", "QUIT", "STARTTLS",
    ]
    for i, c in enumerate(cmds):
        for flags in (0, 3):
            put("fuzz_smtpd_cmd", "seed-%02d-%d" % (i, flags), bytes([flags]) + c.encode())
    paths = ["<a@example.com>", "<>", "<@a.test,@b.test:x@c.test>",
             '<"quoted\\"local"@example.com>', "<a@[127.0.0.1]>",
             "<a@[IPv6:::1]>", "<\u00fc@\u00e4.example>", "<A@EXAMPLE.COM> SIZE=1",
             "<a@xn--bcher-kva.example>", "<" + "x" * 64 + "@example.com>"]
    for i, p in enumerate(paths):
        put("fuzz_smtpd_path", "seed-%02d" % i, p)
    params = [b"\x00abc+2Bdef", b"\x00rfc822;user+40example.com", b"\x00+0D+0AX-Evil:+20",
              b"\x01AGFsaWNlAHNlY3JldA==", b"\x01YWxpY2U=", b"\x02127.0.0.0/8, ::1, 10.0.0.0/8",
              b"\x02192.0.2.7, 2001:db8::/32", b"\x03\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80"]
    for i, p in enumerate(params):
        put("fuzz_smtpd_param", "seed-%02d" % i, p)


def smtpc():
    replies = [
        "220 mx.example.test ESMTP ready\r\n",
        "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n"
        "250-SMTPUTF8\r\n250-CHUNKING\r\n250-DSN\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n",
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n250 2.0.0 Ok: queued\r\n",
        "550-5.1.1 The email account that you tried to reach does not exist.\r\n"
        "550 5.1.1 https://support.google.com/mail/?p=NoSuchUser\r\n",
        "421 4.7.0 [TSS04] Messages temporarily deferred\r\n",
        "250-a\r\n550 b\r\n", "250\r\n25\r\n", "999 x\r\n099 y\r\n2500 ok\r\nabc\r\n\r\n",
        "250 9.9.9 ok\r\n550 2.0.0 no\r\n451 5.1.1 odd\r\n",
        "452 4.2.2 mailbox full \x00\x1b[31m\xff\r\n",
    ]
    for i, r in enumerate(replies):
        put("fuzz_smtpc_reply", "seed-%02d" % i, r.encode("latin-1"))
    bodies = [b"\x01\x10Subject: x\r\n\r\nhello\r\n.\r\n..\r\n",
              b"\x01\x03a\n.\nb\r.\rc\n.\r\nd", b"\x00\xffline\r\n" + b"x" * 3000 + b"\r\n",
              b"\x01\x00.", b"\x01\x07\r\r\n\n\r"]
    for i, b in enumerate(bodies):
        put("fuzz_smtpc_body", "seed-%02d" % i, b)


def config():
    ex = os.path.join(ROOT, "contrib", "mxbatch.conf.example")
    if os.path.exists(ex):
        put("fuzz_config", "seed-example", open(ex, "rb").read())
    put("fuzz_config", "seed-small",
        "[server]\nhostname = mx.test\n[spool]\npath = /nonexistent\n"
        "[delivery]\nretry_schedule = 1s,5m\nsmtp_port = 2525\n"
        '[listen "routing"]\nsocket = /tmp/x.sock\n'
        '[site "default"]\nconnections = 2\n[site "*.google.com"]\nmulti_domain = learn\n'
        '[pool "p"]\naddresses = 192.0.2.1=out1.test, 192.0.2.2=out2.test\n')
    put("fuzz_config", "seed-bad", "[nosuch]\nx = y\n[server\nhostname\n")


def name(n):
    out = b""
    for label in n.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def dns_msg(qname, qtype, answers, rcode=0):
    hdr = struct.pack(">HHHHHH", 0x1234, 0x8180 | rcode, 1, len(answers), 0, 0)
    q = name(qname) + struct.pack(">HH", qtype, 1)
    body = b""
    for rtype, rdata in answers:
        body += b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, 300, len(rdata)) + rdata
    return hdr + q + body


def dns():
    mx = dns_msg("example.test", 15, [(15, struct.pack(">H", 10) + name("MX1.Example.Test.")),
                                      (15, struct.pack(">H", 20) + b"\x03mx2\xc0\x0c")])
    put("fuzz_dns_answer", "seed-mx", b"\x02" + mx)
    put("fuzz_dns_answer", "seed-nullmx", b"\x02" + dns_msg("example.test", 15, [(15, b"\0\0\0")]))
    put("fuzz_dns_answer", "seed-a", b"\x00" + dns_msg("mx1.example.test", 1,
        [(1, bytes([127, 0, 1, 5])), (1, bytes([127, 0, 1, 6]))]))
    put("fuzz_dns_answer", "seed-aaaa", b"\x01" + dns_msg("mx1.example.test", 28,
        [(28, bytes(15) + b"\x01")]))
    put("fuzz_dns_answer", "seed-txt", b"\x03" + dns_msg("2.0.0.127.zen.test", 16,
        [(16, b"\x05hello\x05world"), (16, b"\x03bye")]))
    put("fuzz_dns_answer", "seed-cname", b"\x00" + dns_msg("www.example.test", 1,
        [(5, name("example.test")), (1, bytes([192, 0, 2, 1]))]))
    put("fuzz_dns_answer", "seed-nxdomain", b"\x02" + dns_msg("nx.test", 15, [], rcode=3))


def bounce():
    rules = os.path.join(ROOT, "contrib", "bounce-rules.conf")
    lines = [l for l in open(rules).read().splitlines() if l and not l.startswith("#")]
    for i in range(0, len(lines), 8):
        put("fuzz_bounce_rules", "seed-%02d" % (i // 8),
            "\n".join(lines[i:i + 8]) + "\0" + "550 5.1.1 user unknown")
    for i, rep in enumerate(["421 4.7.0 [TSS04] Messages temporarily deferred",
                             "550 5.7.1 listed at zen.spamhaus.org",
                             "452 4.2.2 mailbox full", "554 5.7.650 reputation",
                             "0 connection timed out"]):
        put("fuzz_bounce_rules", "seed-r%d" % i, "\0" + rep)
    f = b"\0".join([b"rcpt@example.test", b"rfc822;rcpt@example.test", b"mx.example.test",
                    b"5.1.1", b"user unknown\r\nZz-Injected: yes", b"sender@src.test",
                    b"id+0D+0AX", b"q1"])
    put("fuzz_bounce_dsn", "seed-0", b"\x10" + f)
    put("fuzz_bounce_dsn", "seed-1", b"\x21" + f + b"\0Subject: x\nbare lf\r\n\r\nbody\n")
    put("fuzz_bounce_dsn", "seed-2", b"\x42" + f.replace(b"rcpt@", "r\u00e9@".encode()))


if __name__ == "__main__":
    smtpd()
    smtpc()
    config()
    dns()
    bounce()
