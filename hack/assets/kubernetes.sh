# shellcheck shell=bash
# kube-apiserver, kube-controller-manager and kubectl, built from k8s.io/kubernetes.
#
# k8s.io/kubernetes is not meant to be imported: its go.mod replaces every k8s.io/* staging
# module with a local path. We build it from a wrapper module that requires it and replaces
# each staging module with its published v0.Y.Z instead; one `go build` of the three commands
# shares the compile work.

kubernetes_version_var() { echo KW_K8S_VERSION; }
kubernetes_version() { echo "${KW_K8S_VERSION:-1.34.4}"; }
kubernetes_key() { echo "k8s-$(kubernetes_version)"; }
kubernetes_files() { printf '%s\n' kube-apiserver kube-controller-manager kubectl; }
kubernetes_listed_versions() { go list -m -versions k8s.io/kubernetes | cut -d' ' -f2-; }

# k8s.io/kubernetes@v1.Y.Z and the staging modules it requires (at v0.0.0, replaced with a local
# path upstream), at v0.Y.Z. The sample-* modules are examples only its tests import: the build
# never fetches them, and the proxy lacks some of their patches.
kubernetes_modules() {
  local version="$1" upstream
  echo "k8s.io/kubernetes@v${version}"
  upstream="$(go_mod_file "k8s.io/kubernetes@v${version}" 2>/dev/null)" || return 0
  sed -nE '/^[[:space:]]+k8s\.io\/sample-/d; s#^[[:space:]]+(k8s\.io/[^[:space:]]+)[[:space:]]+v0\.0\.0([[:space:]].*)?$#\1@v0.'"${version#1.}"'#p' "$upstream"
}

kubernetes_verify() {
  local dir="$1" version binary
  version="$(kubernetes_version)"
  for binary in kube-apiserver kube-controller-manager; do
    reports "$dir/$binary" "Kubernetes v${version}" --version || return 1
  done
  reports "$dir/kubectl" "Client Version: v${version}" version --client
}

# The layout before per-component caches kept all five binaries in one directory per version triple.
kubernetes_reuse() {
  reuse_old_layout "$1" "k8s-$(kubernetes_version)_etcd-*_helm-*" kubernetes
}

kubernetes_build() {
  local out="$1" version dir upstream ldflags pkg
  version="$(kubernetes_version)"
  dir="$work_root/k8s-${version}"
  log "building kube-apiserver, kube-controller-manager, kubectl v${version} (first time: tens of minutes on 2 cores)"
  mkdir -p "$dir"
  upstream="$(go_mod_file "k8s.io/kubernetes@v${version}")"
  {
    echo "module kaptain-warden.local/k8s-build"
    echo
    echo "go ${GO_LANG}"
    echo
    echo "require k8s.io/kubernetes v${version}"
    echo
    echo "tool ("
    echo "	k8s.io/kubernetes/cmd/kube-apiserver"
    echo "	k8s.io/kubernetes/cmd/kube-controller-manager"
    echo "	k8s.io/kubernetes/cmd/kubectl"
    echo ")"
    echo
    echo "replace ("
    # Every "k8s.io/x => ./staging/src/k8s.io/x" becomes "k8s.io/x => k8s.io/x v0.Y.Z".
    sed -nE 's#^[[:space:]]*(k8s\.io/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\t\1 => \1 v0.'"${version#1.}"'#p' "$upstream"
    echo ")"
  } > "$dir/go.mod"
  (cd "$dir" && go mod tidy >&2)
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=v${version} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=$(echo "$version" | cut -d. -f2)"
    ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl >&2)
}
