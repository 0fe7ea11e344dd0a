#!/bin/bash
# An external extension (as in /opt/extensions): registers for INVOKE and SHUTDOWN and
# logs every event it gets.
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension"
HEADERS="$(mktemp)"
curl -sS -o /dev/null -D "$HEADERS" -X POST "$API/register" -H "Lambda-Extension-Name: logger.sh" -d '{"events":["INVOKE","SHUTDOWN"]}'
ID=$(grep -Fi Lambda-Extension-Identifier "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
echo "EXTENSION registered; handler visible: ${_HANDLER:-no}"
while true; do
    EVENT=$(curl -sS -X GET "$API/event/next" -H "Lambda-Extension-Identifier: $ID")
    case "$EVENT" in
        *SHUTDOWN*) echo "EXTENSION got $EVENT"; exit 0 ;;
        *) echo "EXTENSION saw $(echo "$EVENT" | sed 's/.*"requestId":"\([^"]*\)".*/\1/')" ;;
    esac
done
