"""A webhook receiver for tests: `python webhook_receiver.py PORT RECORD_FILE [keep-alive]` serves
HTTP on 127.0.0.1:PORT and appends each POST it gets to RECORD_FILE as a JSON line (path, headers,
body, the client's port), flushed before it answers 200. It answers HTTP/1.0 and closes each
connection, or with `keep-alive` HTTP/1.1, keeping connections open as most receivers do. Run as a
process of its own, so a test can start and stop it."""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        line = json.dumps({"path": self.path, "headers": dict(self.headers.items()),
                           "body": body.decode("utf-8", "replace"), "clientPort": self.client_address[1]})
        with open(self.server.record_file, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def main() -> None:
    port, record_file = int(sys.argv[1]), sys.argv[2]
    if sys.argv[3:] == ["keep-alive"]:
        Recorder.protocol_version = "HTTP/1.1"
    server = ThreadingHTTPServer(("127.0.0.1", port), Recorder)
    server.record_file = record_file
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
