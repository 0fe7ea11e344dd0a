#!/usr/bin/env bash
# Installs the AWS Lambda runtime interface emulator (aws-lambda-rie) into a cache GOBIN.
# Idempotent: does nothing when the binary is already there. The compat tests and the
# shim benchmark look for it at $KLAMBDA_CACHE/bin/aws-lambda-rie and skip without it.
set -euo pipefail
CACHE="${KLAMBDA_CACHE:-$HOME/.cache/klambda}"
VERSION="v0.0.0-20261030222936-bef5c4ba774d"
BIN="$CACHE/bin/aws-lambda-rie"
if [[ -x "$BIN" ]]; then
	echo "aws-lambda-rie already installed at $BIN"
	exit 0
fi
mkdir -p "$CACHE/bin"
# A module-mode install outside any module, so our go.mod is not touched.
(cd / && GOBIN="$CACHE/bin" GOFLAGS= go install "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$VERSION")
echo "installed $BIN"
