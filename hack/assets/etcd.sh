# shellcheck shell=bash
# etcd, built from go.etcd.io/etcd/server/v3. Its go.mod replaces its sibling modules with
# relative paths, so it is built from a wrapper module that replaces each with the published
# sibling at the same version.

etcd_version_var() { echo KW_ETCD_VERSION; }
etcd_version() { echo "${KW_ETCD_VERSION:-3.6.16}"; }
etcd_key() { echo "etcd-$(etcd_version)"; }
etcd_files() { echo etcd; }
etcd_listed_versions() { go list -m -versions go.etcd.io/etcd/server/v3 | cut -d' ' -f2-; }

etcd_modules() {
  local version="$1" upstream
  upstream="$(go_mod_file "go.etcd.io/etcd/server/v3@v${version}")" || { echo "go.etcd.io/etcd/server/v3@v${version}"; return 0; }
  echo "go.etcd.io/etcd/server/v3@v${version}"
  sed -nE 's#^[[:space:]]*(go\.etcd\.io/etcd/[^[:space:]]+/v3)[[:space:]]+=>[[:space:]]+\.\./.*#\1@v'"${version}"'#p' "$upstream"
}

etcd_verify() { reports "$1/etcd" "etcd Version: $(etcd_version)" --version; }

etcd_reuse() { reuse_old_layout "$1" "k8s-*_etcd-$(etcd_version)_helm-*" etcd; }

etcd_build() {
  local out="$1" version dir upstream
  version="$(etcd_version)"
  dir="$work_root/etcd-${version}"
  log "building etcd v${version}"
  mkdir -p "$dir"
  upstream="$(go_mod_file "go.etcd.io/etcd/server/v3@v${version}")"
  {
    echo "module kaptain-warden.local/etcd-build"
    echo
    echo "go ${GO_LANG}"
    echo
    echo "require go.etcd.io/etcd/server/v3 v${version}"
    echo
    echo "tool go.etcd.io/etcd/server/v3"
    echo
    echo "replace ("
    # Every "go.etcd.io/etcd/x/v3 => ../x" becomes the published sibling at the same version.
    sed -nE 's#^[[:space:]]*(go\.etcd\.io/etcd/[^[:space:]]+/v3)[[:space:]]+=>[[:space:]]+\.\./.*#\t\1 => \1 v'"${version}"'#p' "$upstream"
    echo ")"
  } > "$dir/go.mod"
  (cd "$dir" && go mod tidy >&2)
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3 >&2)
}
