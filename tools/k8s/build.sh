#!/usr/bin/env bash
# Builds the local control plane the tests run (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, kwok) from the Go module proxy into a cache outside the checkout:
#   ${AGENTMEDIC_CACHE:-${XDG_CACHE_HOME:-~/.cache}/agentmedic}/k8s-<kubernetes>-etcd-<etcd>-kwok-<kwok>/bin
# so every clone on the machine, CI's fresh one included, reuses it. Go's module and build caches
# stay where Go keeps them. A second run with the binaries in place is a no-op.
# Prints the bin folder as its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=/dev/null
source "$here/versions.env"
cache_root="${AGENTMEDIC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentmedic}"
dest="$cache_root/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"
stamp="$dest/.complete"
want="kube-apiserver kube-controller-manager kube-scheduler etcd kwok"

if [ -f "$stamp" ]; then
  ok=1; for b in $want; do [ -x "$dest/$b" ] || ok=0; done
  if [ "$ok" = 1 ]; then echo "control plane binaries up to date"; echo "$dest"; exit 0; fi
fi
command -v go >/dev/null || { echo "tools/k8s/build.sh: go is not installed (Go 1.26 or newer is needed)" >&2; exit 2; }

mkdir -p "$dest"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
start=$(date +%s)
step() { echo "[k8s build $(( $(date +%s) - start ))s] $*"; }

kv="$KUBERNETES_VERSION"; minor="${kv#v1.}"; minor="${minor%%.*}"
# Without these, /version says v0.0.0-master and Helm's kubeVersion checks fail.
kflags="-s -w"
for kv_pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kflags="$kflags -X $kv_pkg.gitVersion=$kv -X $kv_pkg.gitMajor=1 -X $kv_pkg.gitMinor=$minor"
  kflags="$kflags -X $kv_pkg.gitTreeState=clean -X $kv_pkg.buildDate=1970-01-01T00:00:00Z"
done

step "downloading modules (first run only)"
(cd "$here/kubernetes" && go mod download)
(cd "$here/etcd" && go mod download)
(cd "$here/kwok" && go mod download)

step "building etcd $ETCD_VERSION"
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$dest/etcd" go.etcd.io/etcd/server/v3)
step "building kwok $KWOK_VERSION"
(cd "$here/kwok" && go build -trimpath -ldflags "-s -w" -o "$dest/kwok" sigs.k8s.io/kwok/cmd/kwok)
for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
  step "building $cmd $kv (the first build of Kubernetes takes 15-30 minutes on two cores)"
  (cd "$here/kubernetes" && go build -trimpath -ldflags "$kflags" -o "$dest/$cmd" "k8s.io/kubernetes/cmd/$cmd")
done
printf '%s\n' "kubernetes=$KUBERNETES_VERSION" "etcd=$ETCD_VERSION" "kwok=$KWOK_VERSION" > "$stamp"
step "done"
echo "$dest"
