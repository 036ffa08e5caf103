"""Submitting mail to mxbatchd from tests: SMTP over the routing socket.

submit(path, sender, rcpts, body) sends one message over the daemon's Unix
socket with smtplib and returns the refused-recipients dict; messages()
builds simple RFC 5322 bodies.
"""
import smtplib
import socket


class UnixSMTP(smtplib.SMTP):
    """smtplib over a Unix domain socket (the routing tier's door)."""

    def __init__(self, path, timeout=30):
        self._path = path
        super().__init__(timeout=timeout)
        self.connect()

    def connect(self, host=None, port=None, source_address=None):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock
        self.file = None
        code, msg = self.getreply()
        if code != 220:
            raise smtplib.SMTPConnectError(code, msg)
        return code, msg


def body(subject="test", text="hello", extra=b""):
    return (("Subject: %s\r\nFrom: sender@src.test\r\nTo: list@src.test\r\n\r\n%s\r\n"
             % (subject, text)).encode() + extra)


def submit(path, sender, rcpts, data=None, mail_options=(), rcpt_options=()):
    with UnixSMTP(path) as s:
        s.ehlo("tests.local")
        return s.sendmail(sender, rcpts, data if data is not None else body(),
                          mail_options=list(mail_options), rcpt_options=list(rcpt_options))


def submit_many(path, sender, messages):
    """messages: list of recipient lists; all sent over one session."""
    with UnixSMTP(path) as s:
        s.ehlo("tests.local")
        for i, rcpts in enumerate(messages):
            s.sendmail(sender, rcpts, body("message %d" % i))
