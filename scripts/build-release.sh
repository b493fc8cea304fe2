#!/usr/bin/env bash
# Builds the release binary the way the Dockerfile does, without Docker, and
# smoke-tests it; CI runs this so the image build cannot rot unseen.
#  1. The Dockerfile's `cargo build` command must be this script's, to the
#     letter.
#  2. Only the files the Dockerfile COPYs (each also allowed by
#     .dockerignore) are copied into a staging directory, and the build runs
#     there: a file the build needs but the image build would not see fails
#     here too.
#  3. The binary must report the crate's version, print exactly the committed
#     CRD, and link only libraries that gcr.io/distroless/cc-debian12 has.
# The binary is left at $CARGO_TARGET_DIR/release/bellows.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export BELLOWS_CACHE="${BELLOWS_CACHE:-$HOME/.cache/bellows}"
# Outside the clone, so CI caches it and a fresh checkout reuses it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$BELLOWS_CACHE/target}"
build=(cargo build --release --locked --bin bellows)

fail() {
  echo "build-release.sh: $*" >&2
  exit 1
}

# 1. One build command, the same in both places (comments, which name the
# command too, do not count).
mapfile -t docker_builds < <(grep -v '^[[:space:]]*#' "$root/Dockerfile" |
  grep -o 'cargo build[^\\&;|]*' | sed 's/[[:space:]]*$//')
[[ ${#docker_builds[@]} -eq 1 ]] ||
  fail "expected one 'cargo build' in Dockerfile, found ${#docker_builds[@]}"
[[ "${docker_builds[0]}" == "${build[*]}" ]] ||
  fail "Dockerfile builds with '${docker_builds[0]}' but this script with '${build[*]}'; make them the same"

# 2. The COPY set: every `COPY` from the build context (not `--from=`), as
# paths relative to the context. A staged copy mirrors the builder's WORKDIR
# only if each source lands under its own name: a file in ./ or ./NAME, a
# directory in ./NAME (Docker copies a directory's contents, not the
# directory itself).
sources=()
while read -r -a words; do
  args=()
  for word in "${words[@]:1}"; do
    [[ "$word" == --* ]] || args+=("$word")
  done
  dest="${args[-1]}"
  for src in "${args[@]:0:${#args[@]}-1}"; do
    [[ -e "$root/$src" ]] || fail "Dockerfile copies '$src', which does not exist"
    if [[ -d "$root/$src" ]]; then
      [[ "$dest" == "./$src" ]] || fail "Dockerfile copies directory '$src' to '$dest'; this script expects './$src'"
    else
      [[ "$dest" == ./ || "$dest" == "./$src" ]] || fail "Dockerfile copies '$src' to '$dest'; this script expects './' or './$src'"
    fi
    grep -qxF "!$src" "$root/.dockerignore" ||
      fail "Dockerfile copies '$src' but .dockerignore does not allow it (add a line '!$src')"
    sources+=("$src")
  done
done < <(grep -E '^COPY[[:space:]]' "$root/Dockerfile" | grep -v -e '--from=')
[[ ${#sources[@]} -gt 0 ]] || fail "no COPY from the build context in Dockerfile"

# A fixed path (cargo rebuilds the crate if its path changes) and `cp -a`
# (kept mtimes: cargo rebuilds only what changed); one run at a time.
stage="$BELLOWS_CACHE/release-context"
mkdir -p "$BELLOWS_CACHE"
exec 9>"$stage.lock"
flock 9
rm -rf "$stage"
mkdir "$stage"
(cd "$root" && cp -a --parents "${sources[@]}" "$stage/")
echo "build-release.sh: building in $stage (${sources[*]}) with target dir $CARGO_TARGET_DIR"
start=$SECONDS
(cd "$stage" && "${build[@]}")
echo "build-release.sh: ${build[*]} took $((SECONDS - start))s"

# 3. Smoke tests.
bin="$CARGO_TARGET_DIR/release/bellows"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)"
[[ "$("$bin" --version)" == "bellows $version" ]] ||
  fail "'bellows --version' printed '$("$bin" --version)', expected 'bellows $version'"
diff -u "$root/crds/schemarollouts.bellows.dev.yaml" <("$bin" crd) ||
  fail "'bellows crd' differs from crds/schemarollouts.bellows.dev.yaml"

size="$(stat -c %s "$bin")"
echo "build-release.sh: $bin: $size bytes ($(numfmt --to=iec "$size"))"
echo "build-release.sh: ldd:"
ldd "$bin"
# What the distroless cc image provides: glibc's libraries, libgcc_s and the
# dynamic loader (linux-vdso is the kernel's). Anything else (libssl, say)
# would be missing at run time.
extra="$(ldd "$bin" | awk '{ print $1 }' | sed 's|.*/||' |
  grep -Ev '^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|ld-linux[-a-z0-9_.]*\.so\.[0-9]+)$' || true)"
[[ -z "$extra" ]] ||
  fail "the binary links libraries the distroless cc image lacks: $(echo "$extra" | tr '\n' ' ')"
echo "build-release.sh: OK: bellows $version, CRD matches, links only libraries distroless cc has"
