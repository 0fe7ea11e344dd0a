#!/usr/bin/env bash
# debian-package.sh ARCH PACKAGE: fetches Debian's PACKAGE for ARCH (amd64, arm64), whatever
# this machine's architecture, and prints the folder it is unpacked in:
#   $KLAMBDA_CACHE/debian/PACKAGE_VERSION_ARCH/    (the .deb's files, dpkg-deb -x)
# apt-get with lists of its own under $KLAMBDA_CACHE/debian/apt (bookworm, both architectures;
# refreshed when a day old) checks the package against Debian's signed release files, as
# apt-get install does; the machine's own apt state and dpkg architectures are left alone.
set -euo pipefail
ARCH=${1:?usage: debian-package.sh ARCH PACKAGE}
PKG=${2:?usage: debian-package.sh ARCH PACKAGE}
case $ARCH in amd64 | arm64) ;; *) echo "debian-package.sh: ARCH $ARCH: want amd64 or arm64" >&2; exit 1 ;; esac
CACHE=${KLAMBDA_CACHE:-$HOME/.cache/klambda}/debian
APT=$CACHE/apt
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/sources"
# The machine's Debian sources (deb.debian.org bookworm, bookworm-updates, bookworm-security).
[ -f "$APT/sources/debian.sources" ] || cp /etc/apt/sources.list.d/debian.sources "$APT/sources/" 2>/dev/null ||
	cat >"$APT/sources/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
opts=(-o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "Dir::Etc::SourceList=/dev/null"
	-o "Dir::Etc::SourceParts=$APT/sources" -o APT::Architecture=amd64 -o APT::Architectures::=amd64
	-o APT::Architectures::=arm64 -o APT::Sandbox::User=root -o Debug::NoLocking=1 -qq)
if [ -z "$(find "$APT/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null)" ]; then
	apt-get "${opts[@]}" update >&2
fi
version=$(apt-cache "${opts[@]}" show --no-all-versions "$PKG:$ARCH" | sed -n 's/^Version: //p')
[ -n "$version" ] || { echo "debian-package.sh: no $PKG for $ARCH in Debian's lists" >&2; exit 1; }
dir=$CACHE/${PKG}_${version//:/%3a}_$ARCH
if [ ! -f "$dir/.complete" ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get "${opts[@]}" download "$PKG:$ARCH=$version" >&2)
	rm -rf "$dir" && mkdir -p "$dir"
	dpkg-deb -x "$tmp"/*.deb "$dir"
	touch "$dir/.complete"
fi
echo "$dir"
