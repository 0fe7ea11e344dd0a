import platform
import sys
import time

print("python init")


def handler(event, context):
    op = event.get("op") if isinstance(event, dict) else None
    if op == "raise":
        raise ValueError("python says no")
    if op == "context":
        return {"requestId": context.aws_request_id, "remainingMs": context.get_remaining_time_in_millis(),
                "function": context.function_name,
                "custom": context.client_context.custom if context.client_context else None}
    if op == "runtime":
        return {"version": platform.python_version(), "machine": platform.machine(),
                "executable": sys.executable}
    if op == "sleep":
        time.sleep(event["ms"] / 1000)
    print("python got", event)
    return {"echo": event}
