#!/bin/sh
# Builds function.zip the way it is built for AWS Lambda's provided.al2023: a static
# linux/amd64 binary named bootstrap at the top of the archive.
set -eu
cd "$(dirname "$0")"
out=${1:-function.zip}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -tags lambda.norpc -ldflags='-s -w' -o "$tmp/bootstrap" .
touch -d @0 "$tmp/bootstrap" # a reproducible archive, so its sha256 only changes with the code
(cd "$tmp" && zip -q -X -9 function.zip bootstrap)
mv "$tmp/function.zip" "$out"
