"""The demo's delivery targets on this machine: an SMTP server (aiosmtpd) and an SMS gateway (HTTP) that
checks each request's Standard Webhooks signature, both counting what they take.

    python scripts/demo_servers.py --smtp 2525 --http 8025 --ready FILE

Runs until SIGTERM or SIGINT, then prints what each server received. FILE is written once both listen.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

counts = {"smtp": 0, "http": 0, "http_unsigned": 0}
lock = threading.Lock()


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with lock:
            counts["smtp"] += len(envelope.rcpt_tos)
        return "250 2.0.0 Ok: queued"


class Gateway(BaseHTTPRequestHandler):
    secret = os.environ.get("DMOPS_GATEWAY_SECRET", "")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            message = Webhook(self.secret).verify(body, dict(self.headers))
        except WebhookVerificationError:
            with lock:
                counts["http_unsigned"] += 1
            self.send_response(401)
            self.end_headers()
            return
        with lock:
            counts["http"] += 1
        reply = json.dumps({"id": "demo-" + message["message_id"][:12]}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smtp", type=int, default=2525)
    parser.add_argument("--http", type=int, default=8025)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()
    smtp = Controller(Sink(), hostname="127.0.0.1", port=args.smtp)
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", args.http), Gateway)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    args.ready.write_text("ready\n")
    done.wait()
    http.shutdown()
    smtp.stop()
    print(
        f"demo servers: the SMTP server took {counts['smtp']:,} messages, the SMS gateway {counts['http']:,}"
        f" ({counts['http_unsigned']:,} refused for a bad signature)"
    )


if __name__ == "__main__":
    main()
