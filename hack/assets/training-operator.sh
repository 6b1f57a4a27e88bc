# shellcheck shell=bash
# The training-operator, the real controller of the tier-3 training scenario (see upstream.sh).

training-operator_version_var() { echo KW_TRAINING_OPERATOR_VERSION; }
training-operator_version() { echo "${KW_TRAINING_OPERATOR_VERSION:-$(upstream_controller_version training-operator)}"; }
training-operator_key() { echo "training-operator-$(training-operator_version)"; }
training-operator_files() { echo training-operator; }
training-operator_listed_versions() { go list -m -versions github.com/kubeflow/training-operator | cut -d' ' -f2-; }
training-operator_modules() { echo "github.com/kubeflow/training-operator@v$1"; }
training-operator_verify() {
  built_from "$1/training-operator" github.com/kubeflow/training-operator "v$(training-operator_version)"
}
training-operator_build() {
  local package
  read -r _ _ package < <(upstream_rows_of training-operator)
  go_install_as "$1/training-operator" "github.com/kubeflow/training-operator/${package}" "v$(training-operator_version)"
}

