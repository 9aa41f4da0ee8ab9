"""A few calls of switchboard's management API, standard library only.

Workers that switchboard runs get SWITCHBOARD_MANAGEMENT_URL (http://host:port/stage) and
SWITCHBOARD_TOKEN in their environment, as they get AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI
and keys for boto3.
"""
import json
import os
import urllib.error
import urllib.parse
import urllib.request

_URL = os.environ.get("SWITCHBOARD_MANAGEMENT_URL", "http://127.0.0.1:9090/prod")
_BASE = _URL.rsplit("/", 1)[0] if _URL.count("/") > 2 else _URL
_TOKEN = os.environ.get("SWITCHBOARD_TOKEN", "")


def _call(method, path, body=None, content_type="application/json"):
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(_BASE + path, data=data, method=method,
                                 headers={"Authorization": "Bearer " + _TOKEN, "Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else {}
    except urllib.error.HTTPError as e:
        return {"error": e.code}


def _q(name):
    return urllib.parse.quote(name, safe="")


def send_to_group(group, message, exclude=()):
    path = "/v1/groups/" + _q(group) + "/messages"
    if exclude:
        path += "?exclude=" + ",".join(exclude)
    return _call("POST", path, json.dumps(message).encode(), "text/plain; charset=utf-8")


def members(group):
    out, after = [], ""
    while True:
        page = _call("GET", "/v1/groups/" + _q(group) + "/members?limit=1000&after=" + after)
        out.extend(page.get("members", []))
        after = page.get("next") or ""
        if not after:
            return out


def names_in(group):
    names = []
    for cid in members(group):
        info = _call("GET", "/v1/connections/" + cid)
        name = (info.get("state") or {}).get("name")
        if name:
            names.append(name)
    return sorted(names)
