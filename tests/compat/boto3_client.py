#!/usr/bin/env python3
"""Drive switchboard's @connections API with the real boto3 `apigatewaymanagementapi` client.

Usage:
  boto3_client.py [OPTIONS] COMMAND [-- COMMAND ...]
  boto3_client.py [OPTIONS]            (commands from standard input, one a line)

COMMAND is one of:
  post ID DATA    PostToConnection, DATA sent as its UTF-8 bytes
  get ID          GetConnection
  delete ID       DeleteConnection
On standard input a line is split like a shell would (quote DATA that has spaces); blank
lines and lines starting with '#' are skipped.

OPTIONS (each falls back to the environment variable named):
  --endpoint URL             SWITCHBOARD_ENDPOINT or AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI,
                             e.g. http://127.0.0.1:PORT/prod
  --region REGION            AWS_REGION or AWS_DEFAULT_REGION, else us-east-1
  --access-key-id ID         AWS_ACCESS_KEY_ID
  --secret-access-key KEY    AWS_SECRET_ACCESS_KEY
  --max-attempts N           attempts per command including retries, default 1 (no retries)

Prints one JSON line per command, flushed at once so a caller can feed stdin line by line:
  {"ok": true, "status": 200, "body": {...}}
  {"ok": false, "status": 410, "error": "GoneException", "message": "..."}
`error` is the code botocore parsed (from the x-amzn-ErrorType header first); a failure
before any HTTP answer has status null and the exception class as error. Exit status 0
whatever the API answered; 1 only for a usage error.
"""

import datetime
import json
import os
import shlex
import sys

USAGE = __doc__.split("\n\n", 1)[1].split("\n\nPrints", 1)[0]

OPTIONS = {
    "--endpoint": "endpoint",
    "--region": "region",
    "--access-key-id": "access_key_id",
    "--secret-access-key": "secret_access_key",
    "--max-attempts": "max_attempts",
}

ARITY = {"post": 2, "get": 1, "delete": 1}


class UsageError(Exception):
    pass


def parse_args(argv):
    """Options, then the commands given on the command line (empty: read stdin)."""
    opts = {}
    i = 0
    while i < len(argv) and argv[i].startswith("--") and argv[i] != "--":
        name, eq, value = argv[i].partition("=")
        if name not in OPTIONS:
            raise UsageError(f"unknown option {name}")
        if not eq:
            i += 1
            if i >= len(argv):
                raise UsageError(f"{name} needs a value")
            value = argv[i]
        opts[OPTIONS[name]] = value
        i += 1
    commands, current = [], []
    for arg in argv[i:]:
        if arg == "--":
            if current:
                commands.append(current)
            current = []
        else:
            current.append(arg)
    if current:
        commands.append(current)
    for command in commands:
        check_command(command)
    return opts, commands


def check_command(command):
    if not command or command[0] not in ARITY or len(command) != 1 + ARITY[command[0]]:
        raise UsageError(f"bad command: {' '.join(command) or '(empty)'}")


def settings(opts):
    env = os.environ.get
    endpoint = (
        opts.get("endpoint")
        or env("SWITCHBOARD_ENDPOINT")
        or env("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI")
    )
    region = opts.get("region") or env("AWS_REGION") or env("AWS_DEFAULT_REGION") or "us-east-1"
    key_id = opts.get("access_key_id") or env("AWS_ACCESS_KEY_ID")
    secret = opts.get("secret_access_key") or env("AWS_SECRET_ACCESS_KEY")
    if not endpoint or not key_id or not secret:
        raise UsageError("an endpoint, an access key id and a secret access key are required")
    try:
        max_attempts = int(opts.get("max_attempts", "1"))
    except ValueError:
        raise UsageError("--max-attempts takes a number") from None
    if max_attempts < 1:
        raise UsageError("--max-attempts must be at least 1")
    return endpoint, region, key_id, secret, max_attempts


def make_client(endpoint, region, key_id, secret, max_attempts):
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=10,
            read_timeout=30,
        ),
    )


def plain(value):
    """The response as JSON types; datetimes as JavaScript's toISOString() writes them."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        utc = value.astimezone(datetime.timezone.utc)
        return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def run(client, command):
    from botocore.exceptions import ClientError

    verb, conn_id = command[0], command[1]
    try:
        if verb == "post":
            resp = client.post_to_connection(ConnectionId=conn_id, Data=command[2].encode("utf-8"))
        elif verb == "get":
            resp = client.get_connection(ConnectionId=conn_id)
        else:
            resp = client.delete_connection(ConnectionId=conn_id)
    except ClientError as e:
        error = e.response.get("Error", {})
        return {
            "ok": False,
            "status": e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            "error": error.get("Code"),
            "message": error.get("Message"),
        }
    except Exception as e:  # no HTTP answer at all: refused, reset, timed out
        return {"ok": False, "status": None, "error": type(e).__name__, "message": str(e)}
    status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
    body = {k: v for k, v in resp.items() if k != "ResponseMetadata"}
    return {"ok": True, "status": status, "body": plain(body)}


def emit(result):
    sys.stdout.write(json.dumps(result, sort_keys=True, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def stdin_commands():
    for line in sys.stdin:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            command = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"bad line {line!r}: {e}") from None
        check_command(command)
        yield command


def main(argv):
    sys.stdout.reconfigure(encoding="utf-8")
    try:
        opts, commands = parse_args(argv)
        client = make_client(*settings(opts))
        for command in commands or stdin_commands():
            emit(run(client, command))
    except UsageError as e:
        sys.stderr.write(f"boto3_client: {e}\n{USAGE}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
