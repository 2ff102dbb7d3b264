#!/usr/bin/env bash
# Builds the Go interop peer (relay-go-peer) and prints the binary's path on
# stdout (everything else goes to stderr).
#
# No network besides Debian's archive is assumed: Go and pion/webrtc v3 come
# from Debian packages and the build runs in GOPATH mode (GO111MODULE=off)
# against Debian's /usr/share/gocode, so neither `go get` nor a module proxy
# is ever contacted. Safe to run repeatedly.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gocode=/usr/share/gocode
pion_src="$gocode/src/github.com/pion/webrtc"
gopath="$here/.gopath"
bin="$here/bin/relay-go-peer"

log() { echo "build.sh: $*" >&2; }

# 1. Toolchain and pion sources from Debian, only when missing.
if ! command -v go >/dev/null 2>&1 || [ ! -f "$pion_src/api.go" ]; then
    log "installing golang-go and golang-github-pion-webrtc.v3-dev from Debian"
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || { log "need root (or sudo) for apt-get"; exit 1; }
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update >&2
    $sudo apt-get install -y --no-install-recommends \
        golang-go golang-github-pion-webrtc.v3-dev >&2
fi
command -v go >/dev/null 2>&1 || { log "go still not found after install"; exit 1; }
[ -f "$pion_src/api.go" ] || { log "pion/webrtc sources missing at $pion_src"; exit 1; }

# 2. A private GOPATH whose only content is github.com/pion/webrtc/v3 pointing
#    at Debian's copy: Debian ships webrtc without the /v3 directory level,
#    while its own dependencies (ice/v2, dtls/v2, srtp/v2, ...) are laid out
#    under their major-version paths already and are found through the
#    second GOPATH entry.
mkdir -p "$gopath/src/github.com/pion/webrtc" "$gopath/cache" "$(dirname "$bin")"
link="$gopath/src/github.com/pion/webrtc/v3"
if [ "$(readlink "$link" 2>/dev/null || true)" != "$pion_src" ]; then
    rm -rf "$link"
    ln -s "$pion_src" "$link"
fi

# 3. Build. Everything that could steer go towards modules or the network is
#    pinned off; the build cache stays inside .gopath so HOME does not matter.
export GO111MODULE=off
export GOPATH="$gopath:$gocode"
export GOCACHE="$gopath/cache"
export GOFLAGS=""
export GOPROXY=off
export GOTOOLCHAIN=local
export CGO_ENABLED=0

log "$(go version)"
( cd "$here/go/relay-go-peer" && go build -o "$bin" . )
log "built $bin"
echo "$bin"
