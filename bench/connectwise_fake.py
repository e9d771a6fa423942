#!/usr/bin/env python3
"""A ConnectWise Manage stand-in for the benchmark: N companies with real field names, served
1,000 a page with RFC 5988 Link headers, from pages built once at start (so its own cost per
request is a socket write). Usage: connectwise_fake.py PORT COUNT."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT, COUNT = int(sys.argv[1]), int(sys.argv[2])
PAGE_SIZE = 1000
WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell", "Cyberdyne"]


def company(i):
    return {
        "id": i + 1,
        "identifier": f"{WORDS[i % len(WORDS)]}{i}",
        "name": f"{WORDS[i % len(WORDS)]} Corp {i}",
        "status": {"id": 1, "name": "Active", "_info": {"status_href": "https://x/status/1"}},
        "types": [{"id": 1, "name": "Client", "_info": {}}],
        "city": "Springfield",
        "deletedFlag": False,
        "_info": {"lastUpdated": "2026-01-01T00:00:00Z", "dateEntered": "2025-01-01T00:00:00Z"},
    }


PAGES = []
for start in range(0, COUNT, PAGE_SIZE):
    PAGES.append(json.dumps([company(i) for i in range(start, min(start + PAGE_SIZE, COUNT))]).encode())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urlparse(self.path)
        if not url.path.endswith("/company/companies"):
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        page = int(parse_qs(url.query).get("page", ["1"])[0])
        body = PAGES[page - 1] if 1 <= page <= len(PAGES) else b"[]"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        if page < len(PAGES):
            nxt = f"http://127.0.0.1:{PORT}{url.path}?page={page + 1}&pageSize={PAGE_SIZE}"
            self.send_header("link", f'<{nxt}>; rel="next"')
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
