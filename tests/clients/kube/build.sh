#!/usr/bin/env bash
# Builds kube-apiserver from Debian's `kubernetes` source package (Kubernetes 1.20.2 with
# its vendor/ tree: Debian ships only kubectl from it, as kubernetes-client) offline in
# GOPATH mode, as Kubernetes 1.20's own Makefile does, without the cloud providers (the
# `providerless` tag: they are most of the build and no test needs them), and unpacks
# Debian's kubernetes-client package beside it for the matching kubectl (the image's
# /usr/bin/kubectl may belong to another package, which keeps kubernetes-client from
# installing). Binaries, named by a hash of this script (which pins the version), and
# Go's build cache live under $KVCORE_TOOLS (default ~/.cache/kvcore-tools): a machine
# builds once. Prints two lines: kube-apiserver's path, then kubectl's.
#
# Both packages come through apt-get with a private copy of the system's Debian entries
# (deb and deb-src), so the machine's apt configuration and lists are left untouched.
set -euo pipefail
VERSION="1.20.5+really1.20.2-1.1+deb12u1"
here="$(cd "$(dirname "$0")" && pwd)"
out="${KVCORE_TOOLS:-$HOME/.cache/kvcore-tools}"
sum="$(sha256sum "$here/build.sh" | cut -c1-16)"
apiserver="$out/kube-apiserver-$sum"
client="$out/kubernetes-client-$sum"
kubectl="$client/usr/bin/kubectl"

apt_private() {   # apt-get with deb and deb-src entries for the system's Debian archive
    local dir="$1"; shift
    "$@" -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts="$dir/parts" \
        -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache"
}

make_src_lists() {
    local dir="$1"
    mkdir -p "$dir/parts" "$dir/lists/partial" "$dir/cache/archives/partial"
    : > "$dir/sources.list"
    if [ -f /etc/apt/sources.list ]; then
        grep -E '^deb .*/debian' /etc/apt/sources.list | sed 'p; s/^deb /deb-src /' \
            >> "$dir/sources.list" || true
    fi
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && grep -q debian-archive-keyring "$f" || continue
        sed 's/^Types: .*/Types: deb deb-src/' "$f" > "$dir/parts/$(basename "$f")"
    done
    for f in /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        grep -E '^deb .*/debian' "$f" | sed 'p; s/^deb /deb-src /' \
            > "$dir/parts/$(basename "$f")" || true
    done
    apt_private "$dir" apt-get update -qq >&2
}

if [ ! -x "$apiserver" ] || [ ! -x "$kubectl" ]; then
    mkdir -p "$out"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    chmod 755 "$work"     # apt's _apt user downloads into it
    make_src_lists "$work/apt"
    if [ ! -x "$kubectl" ]; then
        (cd "$work" && apt_private "$work/apt" apt-get download -q "kubernetes-client=$VERSION") >&2
        rm -rf "$client.tmp.$$"
        dpkg-deb -x "$work"/kubernetes-client_*.deb "$client.tmp.$$"
        rm -rf "$client"
        mv "$client.tmp.$$" "$client"
    fi
    if [ ! -x "$apiserver" ]; then
        (cd "$work" && apt_private "$work/apt" apt-get source -q --download-only \
            "kubernetes=$VERSION") >&2
        (cd "$work" && dpkg-source -x kubernetes_*.dsc src) >&2
        mkdir -p "$work/gopath/src/k8s.io"
        ln -s "$work/src" "$work/gopath/src/k8s.io/kubernetes"
        export CGO_ENABLED=0 GO111MODULE=off GOFLAGS= GOPATH="$work/gopath" \
            GOCACHE="$out/go-build-cache"
        cd "$work/gopath/src/k8s.io/kubernetes"
        # reflect2 1.0.1 (vendored) reads Go's map iterator with the layout of Go < 1.18:
        # under Debian's Go 1.19 the apiserver dies with SIGSEGV in mapiterinit when it
        # decodes a custom resource. 1.0.2 (Debian's golang-github-modern-go-reflect2-dev)
        # is the same API with that fixed.
        rm -rf vendor/github.com/modern-go/reflect2
        cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/
        # The one generated file the release tarball lacks: the OpenAPI definitions, from
        # every package tagged +k8s:openapi-gen (Makefile.generated_files' KUBE target).
        go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen >&2
        tagged="$(find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune \
                -o -type f -name '*.go' -print | xargs grep -l '+k8s:openapi-gen=' \
            | sed 's|/[^/]*$||; s|^\./||; s|^staging/src|vendor|' | LC_ALL=C sort -u \
            | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
            | sed 's|^|k8s.io/kubernetes/|' | paste -sd,)"
        "$work/openapi-gen" --logtostderr -i "$tagged" -p k8s.io/kubernetes/pkg/generated/openapi \
            -O zz_generated.openapi -h hack/boilerplate/boilerplate.generatego.txt \
            -r "$work/openapi-violations.txt" >&2
        v=k8s.io/kubernetes/vendor/k8s.io/component-base/version
        (go build -tags providerless -trimpath -ldflags "-s -w -X $v.gitVersion=v1.20.2 -X $v.gitMajor=1 -X $v.gitMinor=20" \
            -o "$apiserver.tmp.$$" ./cmd/kube-apiserver) >&2
        mv "$apiserver.tmp.$$" "$apiserver"
    fi
fi
echo "$apiserver"
echo "$kubectl"
