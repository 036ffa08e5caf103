"""bench_inject.py - the benchmark's SMTP injector (Python 3 stdlib).

Feeds the same list of messages into either engine over SMTP: `sessions`
concurrent connections (threads), each reusing its connection for message
after message, commands pipelined (MAIL, every RCPT and DATA in one write),
and records for every message the time from the end of its data (the final
".") to the server's reply. smtp-source (Postfix's load generator) is faster
for pure throughput and is used for that; it does not report latency.

  inject(addr, messages, sessions=20, deadline=None) -> Result
  messages: a list (or generator) of (mail_from, [rcpts], body_bytes); body ends in CRLF
            and is sent dot-stuffed as given (the generator below never
            starts a line with ".").
"""
import socket
import threading
import time


class Result:
    def __init__(self):
        self.acked = []      # mail_from of every message answered 250
        self.failed = 0      # messages refused or lost with the connection
        self.latency = []    # seconds, end-of-data -> final reply, 2xx only
        self.t_start = self.t_end = 0.0
        self.errors = []
        self.lock = threading.Lock()

    @property
    def seconds(self):
        return self.t_end - self.t_start

    def rate(self):
        return len(self.acked) / self.seconds if self.seconds else 0.0

    def pct(self, p):
        if not self.latency:
            return None
        s = sorted(self.latency)
        return s[min(len(s) - 1, int(p / 100.0 * len(s)))]


class _Conn:
    def __init__(self, addr, timeout):
        self.s = socket.create_connection(addr, timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self):
        """One (multi-line) reply: (code, text)."""
        while True:
            i = self.buf.find(b"\r\n")
            while i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                if len(line) < 4 or line[3:4] != b"-":
                    return int(line[:3]), line.decode("utf-8", "replace")
                i = self.buf.find(b"\r\n")
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk

    def send(self, data):
        self.s.sendall(data)

    def close(self):
        try:
            self.s.sendall(b"QUIT\r\n")
            self.reply()
        except OSError:
            pass
        except ConnectionError:
            pass
        self.s.close()


def _session(addr, queue, res, timeout, deadline):
    try:
        c = _Conn(addr, timeout)
        code, text = c.reply()
        if code != 220:
            raise ConnectionError("greeting: %s" % text)
        c.send(b"EHLO inject.bench.test\r\n")
        code, text = c.reply()
        if code != 250:
            raise ConnectionError("EHLO: %s" % text)
    except (OSError, ConnectionError) as e:
        with res.lock:
            res.errors.append(str(e))
        return
    while True:
        if deadline and time.monotonic() > deadline:
            break
        with res.lock:
            item = next(queue, None)
        if item is None:
            break
        mail_from, rcpts, body = item
        try:
            cmds = [b"MAIL FROM:<%s>\r\n" % mail_from.encode()]
            cmds += [b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts]
            cmds.append(b"DATA\r\n")
            c.send(b"".join(cmds))
            ok = c.reply()[0] == 250
            n_ok = sum(1 for _ in rcpts if c.reply()[0] in (250, 251))
            dcode = c.reply()[0]
            if dcode != 354:
                with res.lock:
                    res.failed += 1
                if ok and n_ok:
                    c.send(b"RSET\r\n")
                    c.reply()
                continue
            c.send(body)
            t0 = time.monotonic()
            c.send(b".\r\n")
            code, text = c.reply()
            dt = time.monotonic() - t0
            with res.lock:
                if code == 250:
                    res.acked.append(mail_from)
                    res.latency.append(dt)
                else:
                    res.failed += 1
        except (OSError, ConnectionError) as e:
            with res.lock:
                res.failed += 1
                res.errors.append(str(e))
            return
    c.close()


def inject(addr, messages, sessions=20, timeout=120, deadline=None):
    """Send messages over `sessions` connections; a Result."""
    res = Result()
    queue = iter(messages)  # a list or a generator, taken in order
    threads = [threading.Thread(target=_session,
                                args=(addr, queue, res, timeout, deadline),
                                daemon=True)
               for _ in range(sessions)]
    res.t_start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res.t_end = time.monotonic()
    return res


def body(size, tag=""):
    """A message of about `size` bytes: headers + 76-column lines, CRLF."""
    head = ("From: bench@src.test\r\nTo: list@bench.test\r\n"
            "Subject: bench %s\r\nMessage-ID: <%s@src.test>\r\n\r\n"
            % (tag, tag or "x")).encode()
    line = b"x" * 76 + b"\r\n"
    n = max(1, (size - len(head)) // len(line))
    return head + line * n
