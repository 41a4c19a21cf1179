"""An HTTP/1.1 request handler for the loopback servers that reads a request's header section without the email
package (``http.server`` parses it with ``http.client.parse_headers``, i.e. ``email.parser``: about a third of the
loopback Exchange Online server's CPU per request was spent there) and sends each answer in one write.

What it keeps of ``http.server.BaseHTTPRequestHandler``: the request line's checks and their answers, the limits
(a line longer than 65536 bytes, more than 100 header lines: 431), ``self.headers`` as an ``http.client.HTTPMessage``
(names in any case, ``get`` gives a name's first field, ``get_all`` and ``items`` every field, in order), keep-alive
of HTTP/1.1, ``Connection: close``, ``Expect: 100-continue``. Where ``email.parser`` is lax, RFC 9112 decides:

- a field line is ``field-name ":" OWS field-value OWS`` (RFC 9112 section 5); a line that is not (no colon, a name
  that is not a token, whitespace before the colon, a control character in the value) is answered 400 Bad Request,
  as RFC 9112 section 5.1 requires for whitespace before the colon (``email.parser`` took such a line for the
  start of a body and silently dropped it and every field after it);
- leading and trailing whitespace is not part of a field value (section 5.1);
- an obsolete line folding (a line starting with SP or HTAB) is replaced by one SP (section 5.2); one right after the
  request line is refused with 400 (section 2.2);
- a line may end in CRLF or in a bare LF (section 2.2).
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler
from typing import BinaryIO

MAX_LINE = 65536  # http.client's _MAXLINE: a longer request or header line is refused
MAX_HEADER_LINES = 100  # http.client's _MAXHEADERS (it counts the empty line ending the section)

# RFC 9110 section 5.1: field-name = token; section 5.5: field-value = *( VCHAR / obs-text / SP / HTAB ) (CR, LF,
# NUL and the other controls are not in it)
# (the value's surrounding whitespace is stripped after the match: a lazy match of it backtracks at every octet)
_FIELD_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):([\t\x20-\x7e\x80-\xff]*)\r?\n")
_CONTINUATION = re.compile(rb"[ \t]([\t\x20-\x7e\x80-\xff]*)\r?\n")
_END = (b"\r\n", b"\n", b"")


class BadHeaders(Exception):
    def __init__(self, status: HTTPStatus, message: str, explain: str) -> None:
        super().__init__(explain)
        self.status, self.message, self.explain = status, message, explain


def read_headers(rfile: BinaryIO) -> HTTPMessage:
    """The header section from ``rfile`` (which is left at the start of the body), or BadHeaders."""
    fields: list[list[bytes]] = []
    lines = 0
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise BadHeaders(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long",
                             f"got more than {MAX_LINE} bytes when reading header line")
        lines += 1
        if lines > MAX_HEADER_LINES:
            raise BadHeaders(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers",
                             f"got more than {MAX_HEADER_LINES} headers")
        if line in _END:
            break
        field = _FIELD_LINE.fullmatch(line)
        if field is not None:
            fields.append([field[1], field[2].strip(b" \t")])
            continue
        folded = _CONTINUATION.fullmatch(line)
        if folded is None or not fields:
            raise BadHeaders(HTTPStatus.BAD_REQUEST, "Bad request header line", repr(line[:100]))
        fields[-1][1] = (fields[-1][1] + b" " + folded[1].strip(b" \t")).strip(b" \t")
    message = HTTPMessage()
    for name, value in fields:
        message[name.decode("ascii")] = value.decode("iso-8859-1")
    return message


class LeanRequestHandler(BaseHTTPRequestHandler):
    """BaseHTTPRequestHandler with the header section read by :func:`read_headers`, the Date header formatted once
    a second, and each answer sent in one write (the status line, the header section and the body: a buffered
    ``wfile``, flushed by ``handle_one_request`` after each request, by ``finish`` after a refused one)."""

    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # a loopback answer is a few KiB: one write (a bigger one goes in two)
    _date: tuple[int, str] = (0, "")

    def parse_request(self) -> bool:
        """http.server's parse_request (Python 3.11) with the header section read by read_headers."""
        self.command = None  # type: ignore[assignment]
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if len(words) == 0:
            return False
        if len(words) >= 3:
            version = words[-1]
            try:
                if not version.startswith("HTTP/"):
                    raise ValueError
                numbers = version.split("/", 1)[1].split(".")
                if len(numbers) != 2 or any(not n.isdigit() or len(n) > 10 for n in numbers):
                    raise ValueError
                version_number = int(numbers[0]), int(numbers[1])
            except (ValueError, IndexError):
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if version_number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if version_number >= (2, 0):
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                                f"Invalid HTTP version ({version.split('/', 1)[1]})")
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):  # gh-87389, as http.server: not an absolute URI without scheme
            self.path = "/" + self.path.lstrip("/")
        try:
            self.headers = read_headers(self.rfile)
        except BadHeaders as bad:
            self.send_error(bad.status, bad.message, bad.explain)
            return False
        # RFC 9110 section 7.6.1: Connection is a list of options; "close" ends the connection after this answer
        # (RFC 9112 section 9.6), "keep-alive" keeps an HTTP/1.0 one open (RFC 9112 appendix C.2.2)
        options = {o.strip().lower() for o in self.headers.get("Connection", "").split(",")}
        if "close" in options:
            self.close_connection = True
        elif "keep-alive" in options and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        if (self.headers.get("Expect", "").lower() == "100-continue" and self.protocol_version >= "HTTP/1.1"
                and self.request_version >= "HTTP/1.1"):
            return self.handle_expect_100()
        return True

    def handle_expect_100(self) -> bool:
        ok = super().handle_expect_100()
        self.wfile.flush()  # the client waits for it before it sends the body
        return ok

    def date_time_string(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return super().date_time_string(timestamp)
        second, date = LeanRequestHandler._date
        now = int(time.time())  # http.server's format, of the time truncated to the second as it does
        if second != now:
            date = formatdate(now, usegmt=True)
            LeanRequestHandler._date = now, date
        return date
