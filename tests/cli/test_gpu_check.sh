#!/usr/bin/env bash
# tests/cli/test_gpu_check.sh SRCDIR -- scripts/gpu-check's dry mode on a stub bundle: a complete
# layout is accepted and, with no GPU (or --dry-run), exits 77; a missing piece is exit 1 naming
# it; no results directory is exit 2. (The real bundle is scripts/gpu-bundle's; this checks the
# script's own logic without building one.)
set -u
. "$(dirname "$0")/lib.sh"
SRC=$1
mk_bundle() { # a stub bundle in $1
  mkdir -p "$1/bin" "$1/lib"
  printf '#!/bin/sh\necho stub\n' >"$1/bin/kvr-bundle"
  printf 'kvr-run\nkvr-profile\nkvr-db\ntest_backend_ops\ntest_transport\nbench_gpu\n' >"$1/bin/PROGRAMS"
  printf '#!/usr/bin/env bash\nprog=$1; shift; exec "$prog" "$@"\n' >"$1/run"
  chmod +x "$1/bin/kvr-bundle" "$1/run"
  : >"$1/lib/libcjson.so.1"; : >"$1/sdpa_bench.py"
  echo "kvr gpu bundle: stub" >"$1/MANIFEST"
}
mk_bundle "$tmp/b"
check dry_run 77 "layout ok; no GPU here \(dry run\)" -- env KVR_BUNDLE="$tmp/b" "$SRC/scripts/gpu-check" --dry-run "$tmp/res"
if ! nvidia-smi -L 2>/dev/null | grep -q "^GPU "; then
  check no_gpu 77 "layout ok; no GPU here" -- env KVR_BUNDLE="$tmp/b" "$SRC/scripts/gpu-check" "$tmp/res"
fi
rm "$tmp/b/lib/libcjson.so.1"
check missing_lib 1 "lacks: lib/libcjson.so.1" -- env KVR_BUNDLE="$tmp/b" "$SRC/scripts/gpu-check" --dry-run "$tmp/res"
mk_bundle "$tmp/c"; sed -i '/bench_gpu/d' "$tmp/c/bin/PROGRAMS"
check missing_program 1 "kvr-bundle lacks: bench_gpu" -- env KVR_BUNDLE="$tmp/c" "$SRC/scripts/gpu-check" --dry-run "$tmp/res"
check no_bundle 1 "no bundle: run scripts/gpu-bundle" -- env KVR_BUNDLE="$tmp/none" "$SRC/scripts/gpu-check" --dry-run "$tmp/res"
check usage 2 "usage: gpu-check" -- "$SRC/scripts/gpu-check"
summary "gpu-check cli"
