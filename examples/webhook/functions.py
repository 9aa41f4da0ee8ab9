#!/usr/bin/env python3
"""A chat app as stateless-style HTTP functions for switchboard (Python standard library only).

switchboard POSTs every event (CONNECT, MESSAGE, DISCONNECT; AWS API Gateway's JSON shape)
to http://127.0.0.1:3000/events. The functions answer in the Lambda proxy shape and talk
back to clients through the gateway's @connections management API, as an AWS app would
(post_to_connection in a loop over the room's members).

Routes (route selection: $request.body.action):
  {"action": "join", "name": "ada"}      set your nickname, get the member list
  {"action": "send", "text": "hello"}    say something to everyone
  anything else                          $default: a help message

Environment: SWITCHBOARD_MANAGEMENT (default http://127.0.0.1:9090/prod), SWITCHBOARD_TOKEN
(the bearer token from switchboard.toml), SWITCHBOARD_SECRET (the HMAC secret), PORT (3000).
"""
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MANAGEMENT = os.environ.get("SWITCHBOARD_MANAGEMENT", "http://127.0.0.1:9090/prod")
TOKEN = os.environ.get("SWITCHBOARD_TOKEN", "example-token-change-me")
SECRET = os.environ.get("SWITCHBOARD_SECRET", "example-secret-change-me").encode()
PORT = int(os.environ.get("PORT", "3000"))

# Who is connected. A real deployment keeps this in a database; this example keeps it in
# memory to stay dependency-free.
members = {}  # connectionId -> nickname
lock = threading.Lock()


def post(connection_id, payload):
    """PostToConnection; returns False when the connection is gone (410)."""
    req = urllib.request.Request(
        f"{MANAGEMENT}/@connections/{connection_id}",
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    try:
        urllib.request.urlopen(req, timeout=5).read()
        return True
    except urllib.error.HTTPError as e:
        if e.code == 410:
            with lock:
                members.pop(connection_id, None)
            return False
        print(f"post to {connection_id}: HTTP {e.code}", file=sys.stderr)
        return False


def broadcast(payload, exclude=None):
    with lock:
        targets = [c for c in members if c != exclude]
    for c in targets:
        post(c, payload)


def reply(status=200, body=None):
    out = {"statusCode": status}
    if body is not None:
        out["body"] = body if isinstance(body, str) else json.dumps(body)
    return out


def on_connect(event):
    cid = event["requestContext"]["connectionId"]
    name = (event.get("queryStringParameters") or {}).get("name") or f"guest-{cid[-4:]}"
    with lock:
        members[cid] = name[:32]
    return reply(200)


def on_disconnect(event):
    cid = event["requestContext"]["connectionId"]
    with lock:
        name = members.pop(cid, None)
    if name:
        broadcast({"type": "left", "name": name})
    return reply(200)


def on_join(event, body):
    cid = event["requestContext"]["connectionId"]
    name = str(body.get("name") or "")[:32] or None
    with lock:
        if name:
            members[cid] = name
        name = members.get(cid, "?")
        online = sorted(members.values())
    broadcast({"type": "joined", "name": name}, exclude=cid)
    return reply(200, {"type": "welcome", "name": name, "online": online})


def on_send(event, body):
    cid = event["requestContext"]["connectionId"]
    with lock:
        name = members.get(cid, "?")
    broadcast({"type": "message", "from": name, "text": str(body.get("text", ""))[:2000]})
    return reply(200)


def on_default(event, body):
    return reply(200, {"type": "help", "text": 'send {"action":"join","name":"you"} or {"action":"send","text":"hi"}'})


def handle(event):
    ctx = event["requestContext"]
    kind = ctx["eventType"]
    if kind == "CONNECT":
        return on_connect(event)
    if kind == "DISCONNECT":
        return on_disconnect(event)
    try:
        body = json.loads(event.get("body") or "{}")
        if not isinstance(body, dict):
            body = {}
    except ValueError:
        body = {}
    route = ctx["routeKey"]
    return {"join": on_join, "send": on_send}.get(route, on_default)(event, body)


def signature_ok(header, raw):
    """x-switchboard-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>"""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > 300:
        return False
    expected = hmac.new(SECRET, f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not signature_ok(self.headers.get("x-switchboard-signature", ""), raw):
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        event = json.loads(raw)
        out = json.dumps(handle(event)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print(f"chat functions listening on http://127.0.0.1:{PORT}/events", flush=True)
    server.serve_forever()
