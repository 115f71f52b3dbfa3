"""A real SMTP server on loopback for tests: speaks enough of RFC 5321 for ``smtplib`` and keeps what it receives.

The venv has no ``aiosmtpd`` and the standard library's ``smtpd`` is deprecated, so this is a small
``socketserver`` one: HELO/EHLO, MAIL, RCPT, DATA (with dot-unstuffing), RSET, NOOP, QUIT.
"""

import contextlib
import email
import socketserver
import threading
from dataclasses import dataclass
from email.message import Message


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: Message


class _Session(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode("ascii"))

    def handle(self) -> None:
        self.reply("220 localhost test SMTP server")
        sender, recipients, lines, in_data = "", [], [], False
        for raw in self.rfile:
            text = raw.decode("utf-8").rstrip("\r\n")
            if in_data:
                if text == ".":
                    self.server.received.append(Received(sender, recipients, email.message_from_string("\n".join(lines))))
                    sender, recipients, lines, in_data = "", [], [], False
                    self.reply("250 OK: queued")
                else:
                    lines.append(text[1:] if text.startswith(".") else text)
                continue
            verb, _, argument = text.partition(" ")
            verb = verb.upper()
            if verb in ("HELO", "EHLO"):
                self.reply("250 localhost")
            elif verb == "MAIL":
                sender = argument.split(":", 1)[1].strip().strip("<>")
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(argument.split(":", 1)[1].strip().strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                in_data = True
                self.reply("354 End data with <CR><LF>.<CR><LF>")
            elif verb in ("RSET", "NOOP"):
                sender, recipients = ("", []) if verb == "RSET" else (sender, recipients)
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Session)
        self.received: list[Received] = []


@contextlib.contextmanager
def smtp_server():
    """A server on 127.0.0.1 (free port: ``server.server_address[1]``), stopped on exit; ``server.received`` lists messages."""
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
