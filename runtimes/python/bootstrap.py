"""switchboard's bundled AWS Lambda runtime for Python (standard library only).

Run by switchboard for `kind = "lambda"` functions with `runtime = "python"` and no
`command`. It speaks the Lambda Runtime API at `AWS_LAMBDA_RUNTIME_API` the way AWS's
own runtime does: import the `_HANDLER` (`module.function`, module relative to
`LAMBDA_TASK_ROOT`), then loop: GET the next event, call `handler(event, context)`, POST
the JSON of its return value (or the error with its traceback). An import failure is
posted to /init/error and the process exits 1.

One HTTP/1.1 keep-alive connection carries every call, so a warm invocation costs two
small requests on an open socket.

Invoked as `python3 bootstrap.py`; needs Python 3.8+.
"""

import importlib
import json
import os
import socket
import sys
import time
import traceback

RUNTIME = b"/2018-06-01/runtime"
NEXT = RUNTIME + b"/invocation/next"
INIT_ERROR = RUNTIME + b"/init/error"
JSON_HEADERS = b"Content-Type: application/json\r\n"


class LambdaContext:
    """The `context` argument, with the attributes and method AWS's runtime provides."""

    # Fixed for the life of the process: read once, not per invocation.
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
    log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
    identity = None
    client_context = None
    tenant_id = None

    def __init__(self, request_id, deadline_ms, function_arn):
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, msg):
        sys.stdout.write(str(msg))
        sys.stdout.flush()


class RuntimeApi:
    """A minimal HTTP/1.1 client on one keep-alive connection to the runtime API.

    Hand-rolled rather than http.client, whose header parsing (the email package) costs
    more than the rest of a warm invocation; the server is switchboard's own runtime API,
    which always frames bodies with Content-Length.
    """

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.addr = (host, int(port))
        self.host = ("Host: %s\r\n" % address).encode()
        self.sock = None
        self.rfile = None

    def _connect(self):
        sock = socket.create_connection(self.addr)
        # Requests are small single writes; Nagle would only add latency.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.rfile = sock, sock.makefile("rb")

    def _close(self):
        if self.sock is not None:
            self.rfile.close()
            self.sock.close()
        self.sock = self.rfile = None

    def call(self, method, path, body=b"", headers=b""):
        """Returns (status, headers with lowercase byte names, body). Retries once on a
        fresh connection when the kept-alive one turns out to be closed; a second
        failure propagates (the API is gone, so the worker should end)."""
        request = b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n%s\r\n%s" % (
            method, path, self.host, len(body), headers, body)
        for attempt in (0, 1):
            if self.sock is None:
                self._connect()
            try:
                self.sock.sendall(request)
                return self._read_response()
            except (ConnectionError, EOFError):
                self._close()
                if attempt:
                    raise

    def _read_response(self):
        rfile = self.rfile
        line = rfile.readline(65537)
        if not line:
            raise EOFError("the runtime API closed the connection")
        status = int(line.split(None, 2)[1])
        headers = {}
        while True:
            line = rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        body = rfile.read(length) if length else b""
        if len(body) < length:
            raise EOFError("the runtime API closed the connection mid-body")
        if headers.get(b"connection", b"").lower() == b"close":
            self._close()
        return status, headers, body


def error_body(exc, error_type=None, skip_frames=0):
    tb = traceback.extract_tb(exc.__traceback__)[skip_frames:]
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_list(tb),
    }


def load_handler():
    spec = os.environ.get("_HANDLER", "")
    try:
        module_name, func_name = spec.rsplit(".", 1)
    except ValueError:
        raise InitError("Runtime.MalformedHandlerName", "Bad handler '%s': expected module.function" % spec)
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as e:
        raise InitError("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (module_name, e))
    except SyntaxError as e:
        raise InitError("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (module_name, e))
    handler = getattr(module, func_name, None)
    if not callable(handler):
        raise InitError("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (func_name, module_name))
    return handler


class InitError(Exception):
    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type


def report_init_error(api, exc, error_type):
    body = error_body(exc, error_type)
    sys.stderr.write("[ERROR] %s: %s\n%s" % (body["errorType"], body["errorMessage"], traceback.format_exc()))
    sys.stderr.flush()
    try:
        api.call(b"POST", INIT_ERROR, json.dumps(body).encode(), error_headers(body["errorType"]))
    except OSError:
        pass
    sys.exit(1)


def error_headers(error_type):
    return b"Content-Type: application/json\r\nLambda-Runtime-Function-Error-Type: %s\r\n" % (
        error_type.encode("ascii", "replace"))


def main():
    # Handler output goes to a pipe; line buffering makes each print reach the logs at once.
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    api = RuntimeApi(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        handler = load_handler()
    except InitError as e:
        report_init_error(api, e, e.error_type)
    except Exception as e:  # the module raised at import: AWS reports its own type
        report_init_error(api, e, None)

    dumps, loads, environ = json.dumps, json.loads, os.environ
    invocation = RUNTIME + b"/invocation/"
    while True:
        status, headers, body = api.call(b"GET", NEXT)
        if status != 200:
            sys.stderr.write("runtime API answered %d to next; exiting\n" % status)
            sys.exit(1)
        request_id = headers.get(b"lambda-runtime-aws-request-id", b"")
        trace_id = headers.get(b"lambda-runtime-trace-id")
        if trace_id:
            environ["_X_AMZN_TRACE_ID"] = trace_id.decode()
        context = LambdaContext(
            request_id.decode(),
            int(headers.get(b"lambda-runtime-deadline-ms", b"0")),
            headers.get(b"lambda-runtime-invoked-function-arn", b"").decode(),
        )
        err = None
        try:
            result = handler(loads(body), context)
        except Exception as e:
            # Skip this loop's own frame, as AWS's runtime does.
            err = error_body(e, skip_frames=1)
        else:
            try:
                payload = dumps(result).encode()
            except (TypeError, ValueError) as e:
                err = error_body(e, "Runtime.MarshalError", skip_frames=1)
        if err is None:
            api.call(b"POST", invocation + request_id + b"/response", payload, JSON_HEADERS)
        else:
            sys.stderr.write(
                "[ERROR] %s: %s\n%s" % (err["errorType"], err["errorMessage"], "".join(err["stackTrace"]))
            )
            api.call(b"POST", invocation + request_id + b"/error", dumps(err).encode(),
                     error_headers(err["errorType"]))


if __name__ == "__main__":
    main()
