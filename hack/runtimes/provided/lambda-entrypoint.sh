#!/bin/sh
# The entrypoint of klambda's local base images, like the public Lambda base images': run the
# function's bootstrap with the handler (the container's arguments, or _HANDLER).
export LAMBDA_TASK_ROOT=${LAMBDA_TASK_ROOT:-/var/task} LAMBDA_RUNTIME_DIR=${LAMBDA_RUNTIME_DIR:-/var/runtime}
[ $# -gt 0 ] && export _HANDLER="$1"
for b in /var/runtime/bootstrap /var/task/bootstrap /opt/bootstrap; do
	if [ -x "$b" ]; then exec "$b" "$@"; fi
done
echo "klambda: no bootstrap in /var/runtime, /var/task or /opt" >&2
exit 127
