# shellcheck shell=bash
# helm, installed from its Go module (tier 4 installs the chart with it).

helm_version_var() { echo KW_HELM_VERSION; }
helm_version() { echo "${KW_HELM_VERSION:-3.19.5}"; }
helm_key() { echo "helm-$(helm_version)"; }
helm_files() { echo helm; }
helm_listed_versions() { go list -m -versions helm.sh/helm/v3 | cut -d' ' -f2-; }
helm_modules() { echo "helm.sh/helm/v3@v$1"; }

# `helm version --short` prints v3.Y.Z, followed by +g<commit> when a commit is stamped in.
helm_verify() {
  local out
  out="$("$1/helm" version --short 2>&1)" || { log "helm version failed: ${out}"; return 1; }
  [[ "$out" == "v$(helm_version)" || "$out" == "v$(helm_version)+"* ]] && return 0
  log "$1/helm reports ${out}, not v$(helm_version)"
  return 1
}

helm_reuse() { reuse_old_layout "$1" "k8s-*_etcd-*_helm-$(helm_version)" helm; }

helm_build() {
  log "building helm v$(helm_version)"
  GOBIN="$1" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$(helm_version)" \
    "helm.sh/helm/v3/cmd/helm@v$(helm_version)" >&2
}
