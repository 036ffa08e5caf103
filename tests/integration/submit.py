"""Submitting mail to mxbatchd from tests: SMTP over the routing socket.

submit(path, sender, rcpts, data) sends one message over the daemon's Unix
socket (world.UnixSMTP) and returns the refused-recipients dict;
submit_many() sends several over one session; body() builds a simple
RFC 5322 message.
"""
from world import UnixSMTP


def body(subject="test", text="hello", extra=b""):
    return (("Subject: %s\r\nFrom: sender@src.test\r\nTo: list@src.test\r\n\r\n%s\r\n"
             % (subject, text)).encode() + extra)


def submit(path, sender, rcpts, data=None, mail_options=(), rcpt_options=()):
    with UnixSMTP(path, timeout=30) as s:
        s.ehlo("tests.local")
        return s.sendmail(sender, rcpts, data if data is not None else body(),
                          mail_options=list(mail_options), rcpt_options=list(rcpt_options))


def submit_many(path, sender, messages):
    """messages: list of recipient lists; all sent over one session."""
    with UnixSMTP(path, timeout=30) as s:
        s.ehlo("tests.local")
        for i, rcpts in enumerate(messages):
            s.sendmail(sender, rcpts, body("message %d" % i))
