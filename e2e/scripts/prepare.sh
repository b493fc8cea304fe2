#!/usr/bin/env bash
# Installs what the e2e suite needs and builds kube-apiserver and
# kube-controller-manager v1.20.2 from Debian's `kubernetes` source package.
# Idempotent: binaries are cached in $BELLOWS_CACHE (default ~/.cache/bellows)
# and rebuilt only when missing. Prints the bin directory on its last line.
set -euo pipefail

CACHE="${BELLOWS_CACHE:-$HOME/.cache/bellows}"
K8S_VERSION=v1.20.2
# -r1: built with reflect2 1.0.2 / json-iterator 1.1.12 (see below).
BIN="$CACHE/k8s-$K8S_VERSION-r1"
PKGS=(golang-go etcd-server rsync jq openssl postgresql postgresql-client mariadb-server prometheus make
      golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
command -v kubectl >/dev/null 2>&1 || PKGS+=(kubernetes-client)

need=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "e2e needs these Debian packages: ${need[*]}" >&2
    echo "install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "installing ${need[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  # Debian starts the packaged services; the suite runs its own throwaway ones.
  for svc in etcd postgresql mariadb prometheus; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
  done
fi

if [[ -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" ]]; then
  echo "$BIN"
  exit 0
fi

if [[ $(id -u) -ne 0 ]] && ! ls "$CACHE"/src/kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  echo "building Kubernetes needs root (apt-get source) the first time" >&2
  exit 1
fi
mkdir -p "$CACHE/src"
cd "$CACHE/src"
if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  if ! grep -rqs "deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/ && \
     ! grep -rqs "Types:.*deb-src" /etc/apt/sources.list.d/; then
    cat > /etc/apt/sources.list.d/bellows-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -qq >&2
  fi
  apt-get source --download-only kubernetes >&2
fi
rm -rf build && mkdir build
tar -xzf kubernetes_*.orig.tar.gz -C build --strip-components=1
cd build
# Kubernetes 1.20 vendors reflect2 1.0.1 and json-iterator 1.1.10, whose map
# iteration crashes (SIGSEGV in mapiterinit) when built with Go >= 1.18, the
# first time a custom resource is created. Debian packages the fixed
# releases; put them in place of the vendored copies.
for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
  rm -f "vendor/$pkg"/*.go
  for f in /usr/share/gocode/src/"$pkg"/*.go; do
    case "$f" in *_test.go) ;; *) cp "$f" "vendor/$pkg/" ;; esac
  done
done
echo "building kube-apiserver and kube-controller-manager (several minutes on 2 cores)" >&2
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2
mkdir -p "$BIN"
cp _output/local/bin/linux/amd64/kube-apiserver _output/local/bin/linux/amd64/kube-controller-manager "$BIN/"
cd "$CACHE/src" && rm -rf build
echo "$BIN"
