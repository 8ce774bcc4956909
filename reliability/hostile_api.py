#!/usr/bin/env python3
"""A hostile stand-in of Entra ID and the Defender alerts API on 127.0.0.1, for what the
simulator does not do: answers far larger than any real page.

    hostile_api.py PORT MEGABYTES [unsized]

Tokens are issued to anyone; GET /api/alerts answers 200 with a body of MEGABYTES MB of
realistic alerts (2.9 KB each, all with the same lastUpdateTime, far more than any $top),
streamed without being held in memory: with a Content-Length, or with `unsized` without one
(the connection closes at the end), so that the client finds out only while reading.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
SIZE = int(float(sys.argv[2]) * 1_000_000)
UNSIZED = sys.argv[3:] == ["unsized"]
ALERT = {
    "id": "da000000000000000000_0", "incidentId": 1, "severity": "High", "status": "New",
    "title": "Suspicious process", "description": "x" * 2000, "lastUpdateTime": "2026-11-26T09:00:00Z",
    "alertCreationTime": "2026-11-26T08:59:00Z", "evidence": [{"entityType": "File", "sha1": "0" * 40, "fileName": "a.exe"}],
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        body = json.dumps({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "a.b.c"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        head, tail = b'{"value":[', b"]}"
        alerts = []
        size = len(head) + len(tail)
        number = 0
        while size < SIZE:
            alert = dict(ALERT, id=f"da{number:020d}_0")
            alerts.append(json.dumps(alert).encode())
            size += len(alerts[-1]) + 1
            number += 1
            if len(alerts) > 1000:
                break
        # The same 1,000 alerts over and over would be duplicates; the size is what matters.
        count = max(1, (SIZE - len(head) - len(tail)) // (len(alerts[0]) + 1))
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if UNSIZED:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(head) + len(tail) + count * (len(alerts[0]) + 1) - 1))
        self.end_headers()
        try:
            self.wfile.write(head)
            for index in range(count):
                self.wfile.write((b"," if index else b"") + alerts[index % len(alerts)])
            self.wfile.write(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
