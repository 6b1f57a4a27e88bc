# shellcheck shell=bash
# Knative Serving's controller, one of the real controllers of the tier-3 serving scenario
# (see upstream.sh).

knative-serving_version_var() { echo KW_KNATIVE_SERVING_VERSION; }
knative-serving_version() { echo "${KW_KNATIVE_SERVING_VERSION:-$(upstream_controller_version knative-serving)}"; }
knative-serving_key() { echo "knative-serving-$(knative-serving_version)"; }
knative-serving_files() { echo knative-serving-controller; }
knative-serving_listed_versions() { go list -m -versions knative.dev/serving | cut -d' ' -f2-; }
knative-serving_modules() { echo "knative.dev/serving@v$1"; }
knative-serving_verify() {
  built_from "$1/knative-serving-controller" knative.dev/serving "v$(knative-serving_version)"
}
knative-serving_build() {
  local package
  read -r _ _ package < <(upstream_rows_of knative-serving)
  go_install_as "$1/knative-serving-controller" "knative.dev/serving/${package}" "v$(knative-serving_version)"
}

