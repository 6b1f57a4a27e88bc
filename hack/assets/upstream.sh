# shellcheck shell=bash
# The upstream CRDs and configuration files of hack/upstream.tsv (rows crd, family-crd,
# controller-crd and config), copied out of their Go module zips into one cache directory:
#   <dir>/<module>@<version>/<path>   each file or directory, named by module, version and path
#   <dir>/index.tsv                   the rows it holds (what module version path), which the
#                                     harness (kaptain_warden.testing.upstream) reads
# The key is a digest of those rows: editing the table makes a new directory.

UPSTREAM_TABLE="${KW_UPSTREAM_TABLE:-$HACK_DIR/upstream.tsv}"

# The table's rows as "what module version path", comments and blank lines dropped.
upstream_rows() { sed -E 's/#.*//; /^[[:space:]]*$/d' "$UPSTREAM_TABLE" | awk '{print $1, $2, $3, $4}'; }
# The "module version path" of every row whose first column is WHAT.
upstream_rows_of() { upstream_rows | awk -v what="$1" '$1 == what {print $2, $3, $4}'; }
# The version (without the leading v) of the single controller row WHAT.
upstream_controller_version() {
  local rows
  rows="$(upstream_rows_of "$1")"
  [[ "$(printf '%s\n' "$rows" | grep -c .)" == 1 ]] || die "${UPSTREAM_TABLE}: expected one '$1' row"
  set -- $rows
  echo "${2#v}"
}

upstream_manifest_rows() {
  upstream_rows | awk '$1 == "crd" || $1 == "family-crd" || $1 == "controller-crd" || $1 == "config"'
}
upstream_version_var() { echo KW_UPSTREAM_TABLE; }
upstream_version() { upstream_manifest_rows | sha256sum | cut -c1-12; }
upstream_key() { echo "manifests-$(upstream_version)"; }
upstream_files() {
  echo index.tsv
  upstream_manifest_rows | while read -r _ module version path; do echo "${module}@${version}/${path}"; done
}
upstream_listed_versions() { :; }
# Each row is fetched (and checked) on its own in upstream_build, which names the row that fails.
upstream_modules() { :; }

upstream_verify() {
  local dir="$1"
  if ! diff -q <(upstream_manifest_rows) "$dir/index.tsv" >/dev/null; then
    log "$dir/index.tsv does not list the rows of ${UPSTREAM_TABLE}"
    return 1
  fi
  while read -r file; do
    [[ -e "$dir/$file" ]] || { log "$dir/$file is missing"; return 1; }
  done < <(upstream_files)
}

upstream_build() {
  local out="$1" what module version path source listed
  log "copying the upstream CRDs and configuration of ${UPSTREAM_TABLE} out of their Go modules"
  while read -r what module version path; do
    if ! source="$(cd "$work_root" && go mod download -json "${module}@${version}" 2>/dev/null |
      python3 -c 'import json, sys; print(json.load(sys.stdin).get("Dir") or "")')" || [[ -z "$source" ]]; then
      listed="$(cd "$work_root" && go list -m -versions "$module" 2>/dev/null | cut -d' ' -f2- || true)"
      die "the Go module proxy ($(go env GOPROXY)) does not serve ${module}@${version} (row '${what}' of ${UPSTREAM_TABLE});" \
        "versions it lists: ${listed:-none}. Put the nearest served version in the table."
    fi
    [[ -e "$source/$path" ]] || die "${module}@${version} has no ${path} (row '${what}' of ${UPSTREAM_TABLE})"
    mkdir -p "$(dirname "$out/${module}@${version}/${path}")"
    # The module cache is read-only; the copies need not be.
    cp -R "$source/$path" "$out/${module}@${version}/${path}"
    chmod -R u+w "$out/${module}@${version}/${path}"
  done < <(upstream_manifest_rows)
  upstream_manifest_rows > "$out/index.tsv"
}

# -- Shared by the controller components (kserve.sh, knative-serving.sh, training-operator.sh):
# each is built from its Go module at the version of its row in the table (KW_<NAME>_VERSION
# overrides it); CGO_ENABLED=0 and GOTOOLCHAIN=local come from setup_go; builds run under nice.

# Fails unless BINARY was built from MODULE at VERSION (`go version -m` lists the main module
# or a dependency with its version).
built_from() {
  local binary="$1" module="$2" version="$3" out
  out="$(go version -m "$binary" 2>&1)" || { log "go version -m ${binary}: ${out}"; return 1; }
  printf '%s\n' "$out" | awk -v m="$module" -v v="$version" '($1 == "mod" || $1 == "dep") && $2 == m && $3 == v {found=1} END {exit !found}' && return 0
  log "${binary} was not built from ${module} ${version}"
  return 1
}


# `go install PACKAGE@VERSION` into a scratch GOBIN, then renamed to TARGET.
go_install_as() {
  local target="$1" package="$2" version="$3" bin
  bin="$(dirname "$target")/.gobin"
  log "building ${package}@${version} (first time: minutes on 2 cores)"
  mkdir -p "$bin"
  (cd "$work_root" && GOBIN="$bin" nice -n 10 go install -trimpath -ldflags "-s -w" "${package}@${version}" >&2)
  mv "$bin/$(basename "$package")" "$target"
  rm -rf "$bin"
}
