#!/usr/bin/env bash
# Installs the Node.js runtime interface client (npm aws-lambda-ric 3.3.0, which still
# builds on Node 20) into $KLAMBDA_CACHE/aws-lambda-ric. Idempotent: an existing, complete
# install is kept. Its native addon builds from source: that needs Debian's
#   apt-get install -y cmake autoconf automake libtool g++ make
# (run with INSTALL_APT=1 to have this script do it) and takes about 8 minutes.
set -euo pipefail
CACHE="${KLAMBDA_CACHE:-$HOME/.cache/klambda}"
DIR="$CACHE/aws-lambda-ric"
MARK="$DIR/.complete"
if [[ -f "$MARK" ]]; then
	echo "aws-lambda-ric already installed in $DIR"
	exit 0
fi
if [[ "${INSTALL_APT:-0}" == 1 ]]; then
	apt-get install -y cmake autoconf automake libtool g++ make
fi
for tool in node npm cmake autoconf automake libtool make g++; do
	if ! command -v "$tool" >/dev/null && ! { [[ $tool == libtool ]] && command -v libtoolize >/dev/null; }; then
		echo "missing $tool: apt-get install -y cmake autoconf automake libtool g++ make nodejs npm" >&2
		exit 1
	fi
done
mkdir -p "$DIR"
cd "$DIR"
[[ -f package.json ]] || echo '{"name":"klambda-ric-cache","private":true}' >package.json
npm install --no-audit --no-fund aws-lambda-ric@3.3.0
test -x node_modules/.bin/aws-lambda-ric
touch "$MARK"
echo "installed aws-lambda-ric in $DIR"
