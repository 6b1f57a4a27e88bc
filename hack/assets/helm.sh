# shellcheck shell=bash
# helm, installed from its Go module (tier 4 renders the chart with it, tier 3 installs it).
#
# Built like a helm release: its default Kubernetes version (`helm template` and `helm lint`
# without --kube-version) is the minor of the k8s.io/client-go it requires, set by the same
# -X flags helm's Makefile passes; without them it would be v1.20.0, older than the chart's
# kubeVersion allows. The build records it in kube-version; verify asks the binary.

helm_version_var() { echo KW_HELM_VERSION; }
helm_version() { echo "${KW_HELM_VERSION:-3.19.5}"; }
helm_key() { echo "helm-$(helm_version)"; }
helm_files() { printf '%s\n' helm kube-version; }
helm_listed_versions() { go list -m -versions helm.sh/helm/v3 | cut -d' ' -f2-; }
helm_modules() { echo "helm.sh/helm/v3@v$1"; }

# `helm version --short` prints v3.Y.Z, followed by +g<commit> when a commit is stamped in;
# `helm template` of a one-line chart prints the default Kubernetes version.
helm_verify() {
  local dir="$1" out expected chart
  out="$("$dir/helm" version --short 2>&1)" || { log "helm version failed: ${out}"; return 1; }
  if [[ "$out" != "v$(helm_version)" && "$out" != "v$(helm_version)+"* ]]; then
    log "$dir/helm reports ${out}, not v$(helm_version)"
    return 1
  fi
  [[ -f "$dir/kube-version" ]] || { log "$dir/kube-version is missing"; return 1; }
  expected="$(<"$dir/kube-version")"
  chart="$(mktemp -d)"
  mkdir "$chart/templates"
  printf 'apiVersion: v2\nname: probe\nversion: 0.0.0\n' > "$chart/Chart.yaml"
  printf 'kubeVersion: {{ .Capabilities.KubeVersion.Version }}\n' > "$chart/templates/probe.yaml"
  out="$("$dir/helm" template probe "$chart" 2>&1)" || true
  rm -rf "$chart"
  [[ "$out" == *"kubeVersion: ${expected}"* ]] && return 0
  log "$dir/helm does not default to Kubernetes ${expected}: ${out}"
  return 1
}

helm_reuse() { reuse_old_layout "$1" "k8s-*_etcd-*_helm-$(helm_version)" helm; }

helm_build() {
  local out="$1" version client_go minor flags="-s -w" pkg
  version="$(helm_version)"
  log "building helm v${version}"
  client_go="$(sed -nE 's#^[[:space:]]*k8s\.io/client-go[[:space:]]+v0\.([0-9]+)\..*#\1#p' \
    "$(go_mod_file "helm.sh/helm/v3@v${version}")" | head -n 1)"
  [[ -n "$client_go" ]] || die "helm v${version}: no k8s.io/client-go requirement in its go.mod"
  minor="$client_go"
  flags+=" -X helm.sh/helm/v3/internal/version.version=v${version}"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    flags+=" -X ${pkg}.k8sVersionMajor=1 -X ${pkg}.k8sVersionMinor=${minor}"
  done
  GOBIN="$out" go install -trimpath -ldflags "$flags" "helm.sh/helm/v3/cmd/helm@v${version}" >&2
  echo "v1.${minor}.0" > "$out/kube-version"
}
