# shellcheck shell=bash
# KServe's manager, one of the real controllers of the tier-3 serving scenario (see upstream.sh).

# Its go.mod has replace directives and an exclude, which `go install module@version` refuses:
# a wrapper module requires it and repeats those lines (every one names a published module).
kserve_version_var() { echo KW_KSERVE_VERSION; }
kserve_version() { echo "${KW_KSERVE_VERSION:-$(upstream_controller_version kserve)}"; }
kserve_key() { echo "kserve-$(kserve_version)"; }
kserve_files() { echo kserve-manager; }
kserve_listed_versions() { go list -m -versions github.com/kserve/kserve | cut -d' ' -f2-; }
kserve_modules() { echo "github.com/kserve/kserve@v$1"; }
kserve_verify() { built_from "$1/kserve-manager" github.com/kserve/kserve "v$(kserve_version)"; }

kserve_build() {
  local out="$1" version dir upstream package
  version="$(kserve_version)"
  read -r _ _ package < <(upstream_rows_of kserve)
  dir="$work_root/kserve-${version}"
  log "building KServe's manager v${version} (first time: minutes on 2 cores)"
  mkdir -p "$dir"
  upstream="$(go_mod_file "github.com/kserve/kserve@v${version}")"
  if grep -Eq '=>[[:space:]]*\.' "$upstream"; then
    die "github.com/kserve/kserve@v${version}'s go.mod replaces a module with a local path; the wrapper cannot repeat it"
  fi
  {
    echo "module kaptain-warden.local/kserve-build"
    echo
    echo "go ${GO_LANG}"
    echo
    echo "require github.com/kserve/kserve v${version}"
    echo
    echo "tool github.com/kserve/kserve/${package}"
    echo
    # Its replace and exclude lines, single or in blocks, as they are.
    awk '/^(replace|exclude)[[:space:]]*\(/ {block=1; print; next}
         block {print; if ($0 ~ /^\)/) block=0; next}
         /^(replace|exclude)[[:space:]]/ {print}' "$upstream"
  } > "$dir/go.mod"
  (cd "$dir" && go mod tidy >&2)
  (cd "$dir" && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$out/kserve-manager" "github.com/kserve/kserve/${package}" >&2)
}

