"""A checking proxy in front of s3rver, for tier-s3's tests.

s3rver checks neither SigV4 signatures nor x-amz-checksum-crc32c, so
this proxy does: it checks the CRC-32C of bodies that carry one, and recomputes
every request's signature from the secret key (Python's hmac, following
AWS's "Signature Version 4" description: canonical request, string to
sign, derived key) and answers 403 SignatureDoesNotMatch when it differs,
else forwards the request to s3rver as is. It also records each request's
Host header and path, which tells virtual-host from path-style addressing.

    p = SigV4Proxy(upstream_port, secret="S3RVER", region="us-east-1")
    p.start()            # listens on 127.0.0.1:p.port
    p.checked, p.bad     # requests verified, requests refused
    p.checksums          # CRC-32C checksums verified
    p.requests           # [(method, host, path)]
    p.queries            # [query string], one per request
    p.inject["partNumber=2&"] = 1  # answer the next such request 500
    p.stop()             # closes the port: clients see "connection refused"
"""

import base64
import hashlib
import hmac
import http.client
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def _enc(s):
    return urllib.parse.quote(s, safe=UNRESERVED)


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _crc32c_table()


def crc32c_b64(data):
    """x-amz-checksum-crc32c of data: base64 of the big-endian CRC-32C."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return base64.b64encode((c ^ 0xFFFFFFFF).to_bytes(4, "big")).decode()


def canonical_query(raw):
    pairs = []
    for part in raw.split("&") if raw else []:
        name, _, value = part.partition("=")
        pairs.append((_enc(urllib.parse.unquote(name)),
                      _enc(urllib.parse.unquote(value))))
    return "&".join("%s=%s" % p for p in sorted(pairs))


def expected_signature(method, path, query, headers, secret, region):
    """headers: dict of lower-case name -> value. Returns (signature,
    signature given) or raises ValueError for a malformed request."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        raise ValueError("not SigV4: %r" % auth[:40])
    fields = dict(f.strip().split("=", 1) for f in auth[17:].split(","))
    cred = fields["Credential"].split("/")
    signed = fields["SignedHeaders"].split(";")
    for must in ("host", "x-amz-date", "x-amz-content-sha256"):
        if must not in signed:
            raise ValueError("%s is not signed" % must)
    if cred[2] != region or cred[3] != "s3" or cred[4] != "aws4_request":
        raise ValueError("credential scope %s" % "/".join(cred[1:]))
    canon = "\n".join([
        method, path, canonical_query(query),
        "".join("%s:%s\n" % (h, " ".join(headers.get(h, "").split()))
                for h in signed),
        ";".join(signed), headers["x-amz-content-sha256"]])
    date = headers["x-amz-date"]
    scope = "%s/%s/s3/aws4_request" % (date[:8], region)
    sts = "\n".join(["AWS4-HMAC-SHA256", date, scope,
                     hashlib.sha256(canon.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for m in (date[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, m.encode(), hashlib.sha256).digest()
    return (hmac.new(key, sts.encode(), hashlib.sha256).hexdigest(),
            fields["Signature"])


class SigV4Proxy:
    def __init__(self, upstream_port, secret, region="us-east-1"):
        self.upstream = upstream_port
        self.secret = secret
        self.region = region
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.checked = 0
        self.bad = []
        self.requests = []
        self.queries = []  # the query string of each of requests
        self.checksums = 0  # x-amz-checksum-crc32c headers verified
        self.inject = {}  # substring of the request path -> 500s to answer
        self.lock = threading.Lock()
        self.server = None
        self.conns = set()  # open client connections, closed by stop()

    def start(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                BaseHTTPRequestHandler.setup(self)
                with proxy.lock:
                    proxy.conns.add(self.connection)

            def finish(self):
                with proxy.lock:
                    proxy.conns.discard(self.connection)
                try:
                    BaseHTTPRequestHandler.finish(self)
                except OSError:
                    pass

            def handle_one(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                path, _, query = self.path.partition("?")
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                with proxy.lock:
                    proxy.requests.append(
                        (self.command, hdrs.get("host", ""), path))
                    proxy.queries.append(query)
                try:
                    want, given = expected_signature(
                        self.command, path, query, hdrs, proxy.secret,
                        proxy.region)
                    why = None if want == given else "signature mismatch"
                except (ValueError, KeyError, IndexError) as e:
                    why = "malformed: %s" % e
                given = hdrs.get("x-amz-checksum-crc32c")
                if not why and given is not None:
                    if given != crc32c_b64(body):
                        why = "x-amz-checksum-crc32c mismatch"
                    else:
                        with proxy.lock:
                            proxy.checksums += 1
                with proxy.lock:
                    if why:
                        proxy.bad.append((self.command, self.path, why))
                    else:
                        proxy.checked += 1
                with proxy.lock:
                    hit = [k for k, n in proxy.inject.items()
                           if n > 0 and k in self.path]
                    for k in hit[:1]:
                        proxy.inject[k] -= 1
                if hit and not why:
                    msg = (b"<Error><Code>InternalError</Code><Message>"
                           b"injected by the test</Message></Error>")
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if why:
                    msg = (b"<Error><Code>SignatureDoesNotMatch</Code>"
                           b"<Message>" + why.encode() + b"</Message>"
                           b"</Error>")
                    self.send_response(403)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                up = http.client.HTTPConnection("127.0.0.1", proxy.upstream,
                                                timeout=30)
                fwd = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("expect", "connection")}
                fwd["Content-Length"] = str(len(body))
                try:
                    up.request(self.command, self.path, body=body,
                               headers=fwd)
                    r = up.getresponse()
                    data = r.read()
                except OSError:
                    # s3rver is gone: so is the proxy, as far as the
                    # client can tell (no answer, connection closed).
                    self.close_connection = True
                    return
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection",
                                         "content-length", "date",
                                         "keep-alive"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                up.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

        ThreadingHTTPServer.allow_reuse_address = True
        ThreadingHTTPServer.daemon_threads = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
