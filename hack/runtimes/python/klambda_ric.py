"""klambda's minimal Python runtime interface client (the local Python stand-in image).

Lambda's Python base images run awslambdaric, which comes from PyPI; PyPI is not reachable
where klambda's local images are built, so this stand-in implements the same Runtime API
loop with the standard library only: import the handler (module.function, from
LAMBDA_TASK_ROOT), then for each event from /runtime/invocation/next call
handler(event, context) and post its JSON result, or the exception as
{errorMessage, errorType, stackTrace} with Lambda-Runtime-Function-Error-Type Unhandled.
An import error is posted to /runtime/init/error. The context carries aws_request_id,
function_name, function_version, memory_limit_in_mb, invoked_function_arn, log_group_name,
log_stream_name, client_context, identity and get_remaining_time_in_millis().
Not implemented (awslambdaric has them): response streaming, the multi-concurrency mode,
the structured (JSON) log format, X-Ray's _X_AMZN_TRACE_ID beyond setting it.
"""
import importlib
import json
import os
import sys
import time
import traceback
import urllib.request

API = "http://%s/2018-06-01/runtime" % os.environ["AWS_LAMBDA_RUNTIME_API"]


def _post(path, body, headers=None):
    data = json.dumps(body).encode() if not isinstance(body, (bytes, bytearray)) else body
    req = urllib.request.Request(API + path, data=data, method="POST", headers=headers or {})
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as r:
        r.read()


def _error(exc):
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
    }


class _Obj:
    def __init__(self, d):
        for k, v in (d or {}).items():
            setattr(self, k, v)


class Context:
    def __init__(self, headers):
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn", "")
        self._deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms", "0") or 0)
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        cc = headers.get("Lambda-Runtime-Client-Context")
        self.client_context = _Obj(json.loads(cc)) if cc else None
        ci = headers.get("Lambda-Runtime-Cognito-Identity")
        self.identity = _Obj(json.loads(ci)) if ci else None

    def get_remaining_time_in_millis(self):
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _load(handler):
    module, _, fn = handler.rpartition(".")
    if not module or not fn:
        raise ValueError("Bad handler '%s': want module.function" % handler)
    return getattr(importlib.import_module(module.replace("/", ".")), fn)


def main():
    handler = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("_HANDLER", "")
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    sys.path.insert(0, task_root)
    try:
        fn = _load(handler)
    except Exception as exc:  # noqa: BLE001 - every import failure is an init error
        e = _error(exc)
        e["errorType"] = "Runtime.ImportModuleError" if isinstance(exc, ImportError) else "Runtime.HandlerNotFound" if isinstance(exc, AttributeError) else e["errorType"]
        print("[ERROR] %s: %s" % (e["errorType"], e["errorMessage"]), file=sys.stderr, flush=True)
        _post("/init/error", e, {"Lambda-Runtime-Function-Error-Type": e["errorType"]})
        sys.exit(1)
    while True:
        with urllib.request.urlopen(API + "/invocation/next") as r:
            headers = {k: v for k, v in r.headers.items()}
            body = r.read()
        ctx = Context(headers)
        if "Lambda-Runtime-Trace-Id" in headers:
            os.environ["_X_AMZN_TRACE_ID"] = headers["Lambda-Runtime-Trace-Id"]
        try:
            event = json.loads(body) if body else None
            result = fn(event, ctx)
            out = json.dumps(result).encode()
        except Exception as exc:  # noqa: BLE001 - the function's error goes to the caller
            e = _error(exc)
            e["requestId"] = ctx.aws_request_id
            print("[ERROR] %s: %s" % (e["errorType"], e["errorMessage"]), file=sys.stderr, flush=True)
            _post("/invocation/%s/error" % ctx.aws_request_id, e, {"Lambda-Runtime-Function-Error-Type": "Unhandled"})
            continue
        _post("/invocation/%s/response" % ctx.aws_request_id, out)


if __name__ == "__main__":
    main()
