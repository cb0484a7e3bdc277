#!/usr/bin/env python3
"""vs_llamacpp.py -- kvr's single-rank prefill against llama.cpp's prompt processing, side by side
in one run on this machine: the same weights, the same token ids, the same thread count.

Sides:
  kvr        build/bench/bench_prefill --ttft-only (one process per sample: model load, the
             session's prepared ranks for C tokens (workspace made and touched once, as
             kvr-run), one warm-up prefill of min(64, C) tokens, then R timed prefills; the
             sample is their median TTFT);
  llama.cpp  llama-cpp-python's libllama in this process (low-level API; one context per length,
             one warm-up decode of min(64, C) tokens, then R timed decodes; the sample is their
             median). Flash attention ON (LLAMA_FLASH_ATTN_TYPE_ENABLED), n_batch = C,
             n_ubatch = min(C, 512) (llama.cpp's default), K/V cache in llama.cpp's default type
             (F16), n_threads = n_threads_batch = T.
Timed region, both sides: the prompt's C tokens through every layer into a cold KV cache (kvr:
cache rows [0, C) written by this prefill, attention reading only those; llama.cpp: the cache
cleared with llama_memory_clear before the clock starts), the final norm and LM head for the last token only,
and its argmax. kvr: the TTFT of kvr_prefill_run (start barrier to argmax, docs/runtime.md);
llama.cpp: llama_decode of one batch of C tokens with logits requested for the last one, then
llama_get_logits_ith(-1) and the argmax (numpy), on the host clock. Model loading, context or
workspace creation and tokenization are outside both.

Weights: (1) the real model converted to F32 by llama.cpp's own quantize API
(llama_model_quantize, LLAMA_FTYPE_ALL_F32: as tests/ref/reference_llamacpp.py), both sides
multiplying the same fp32 matrices; (2) the shipped Q4_1 GGUF: llama.cpp multiplies the Q4_1
blocks by Q8_1-quantized activations, kvr dequantizes each matrix to fp32 before its sgemm
(docs/runtime.md). Token ids: (i * 7919 + 13) mod V, as bench_prefill.

Order: per (format, threads, length), `rounds` pairs alternating A B B A ... (A = kvr), so that a
shared machine's drift falls on both. Printed per length: each side's median sample, the speed
ratio kvr/llama.cpp (= llama.cpp ms / kvr ms; > 1: kvr faster) as the median of the per-pair
ratios with their range, the ratio of the medians, the same ratio of process CPU time (kvr: the
prefill process's over kvr_prefill_run; llama.cpp: this process's over the timed region, both
medians over R; steadier than the wall clock while other jobs share the cores, and it counts
what spinning threads burn), kvr's achieved GFLOP/s (bench_prefill's FLOP
count: GEMMs, causal attention over the valid triangle, the head) and that as a fraction of the
same run's OpenBLAS sgemm rate (bench_prefill --rates-only: 2048^3, T threads, measured at the
start of each (format, threads) group), by the wall clock and per CPU second (kvr's FLOPs over
its process CPU time against sgemm's FLOPs over its own). Both sides' first tokens are printed (they may differ on
Q4_1, where the arithmetic differs). How llama.cpp was built is printed first: its
llama_print_system_info() and the GGML_* options recorded in the wheel's ggml-config.cmake
(scripts/deps builds it with GGML_NATIVE=OFF, which is not llama.cpp's default (ON): the
x86-64 AVX2 set, no AVX-512 even where this CPU has it -- the script says so when that is the
case). Asserts nothing; exit 2 for usage errors, 1 when a side fails.

  nice bench/vs_llamacpp.py [--bindir build] [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
      [--f32 PATH (reuse or keep the F32 conversion; default: a temporary file)]
      [--lengths 128,512,2048,8192] [--threads 1,2] [--formats f32,q4_1] [--rounds 4]
      [--long-rounds 2 (lengths > 2048)] [--reps R (per sample; default 5/3/1 by length)]
      [--ubatch 512] [--quick (128,512 tokens, 1 thread, 2 rounds)]
Another llama.cpp build of the same version (llama.cpp 0c1e570, the one llama-cpp-python 0.3.36
vendors), e.g. a native one: LLAMA_CPP_LIB_PATH=DIR (the directory holding its libllama.so,
read by llama-cpp-python; its options are read from a pip --target install's
lib/cmake/ggml/ggml-config.cmake, else a CMakeCache.txt up to three levels above). `scripts/deps
--bench` builds the native one: LLAMA_CPP_LIB_PATH=.deps/llama-native/llama_cpp/lib.
Full run: about 40 minutes on a quiet 2-core machine, 8192 tokens most of it (--lengths
128,512,2048 for less); --quick: about a minute.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
from reference_llamacpp import quantize_f32  # noqa: E402 (the tests' F32 conversion, one copy)


def die(msg, code=1):
    print("vs_llamacpp.py: " + msg, file=sys.stderr)
    sys.exit(code)


def find_cmake_cache(d):
    """The CMakeCache.txt of the llama.cpp build a library directory belongs to, or None."""
    d = os.path.abspath(d)
    for _ in range(4):
        if os.path.exists(os.path.join(d, "CMakeCache.txt")):
            return os.path.join(d, "CMakeCache.txt")
        d = os.path.dirname(d)
    return None


def build_info(llama_cpp):
    """What llama.cpp was built with: system info and the recorded GGML options (the wheel's
    ggml-config.cmake, or the CMakeCache.txt of the build LLAMA_CPP_LIB_PATH points into)."""
    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    lines = ["llama-cpp-python %s, libllama from %s, system info: %s" %
             (llama_cpp.__version__, override or "the wheel",
              llama_cpp.llama_print_system_info().decode().strip())]
    wheel_cfg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(override or "."))),
                             "lib", "cmake", "ggml", "ggml-config.cmake")
    if override and os.path.exists(wheel_cfg):  # a pip --target install (scripts/deps --bench)
        cfg = wheel_cfg
        pattern = r'^set\((GGML_[A-Z0-9_]+) "([^"]*)"\)'
    elif override:
        cfg = find_cmake_cache(override)
        pattern = r'^(GGML_[A-Z0-9_]+):[A-Z]+=(.*)$'
    else:
        pkg = os.path.dirname(os.path.dirname(os.path.abspath(llama_cpp.__file__)))
        cfg = os.path.join(pkg, "lib", "cmake", "ggml", "ggml-config.cmake")
        pattern = r'^set\((GGML_[A-Z0-9_]+) "([^"]*)"\)'
    opts = {}
    if cfg and os.path.exists(cfg):
        for m in re.finditer(pattern, open(cfg).read(), re.M):
            opts[m.group(1)] = m.group(2)
        keys = ["GGML_BUILD_COMMIT", "GGML_NATIVE", "GGML_NATIVE_DEFAULT", "GGML_AVX", "GGML_AVX2",
                "GGML_FMA", "GGML_F16C", "GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_BF16",
                "GGML_LLAMAFILE", "GGML_OPENMP", "GGML_BLAS", "GGML_CPU_REPACK"]
        lines.append("build options (%s): %s" %
                     (cfg, " ".join("%s=%s" % (k[5:], opts[k]) for k in keys if k in opts)))
    else:
        lines.append("build options: no ggml-config.cmake / CMakeCache.txt found (%s)" % cfg)
    flags = set()
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("flags"):
                flags = set(ln.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if opts.get("GGML_NATIVE", "").upper() == "OFF":
        note = ("GGML_NATIVE=OFF: not llama.cpp's default (GGML_NATIVE_DEFAULT=%s, -march=native);"
                " built for the fixed set above" % opts.get("GGML_NATIVE_DEFAULT", "?"))
        if "avx512f" in flags and opts.get("GGML_AVX512") != "ON":
            note += "; this CPU has AVX-512 (avx512f%s), which this llama.cpp does not use" % (
                ", avx512_vnni" if "avx512_vnni" in flags else "")
        lines.append(note)
    elif opts.get("GGML_NATIVE", "").upper() == "ON":
        lines.append("GGML_NATIVE=ON (llama.cpp's default): -march=native of the building machine")
    return lines


class LlamaSide:
    """One llama.cpp model and context for one length; prefill() is the timed region."""

    def __init__(self, llama_cpp, path, n_ctx, threads, ubatch):
        self.l = llama_cpp
        mp = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            raise RuntimeError("llama.cpp could not load %s" % path)
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx
        cp.n_ubatch = min(n_ctx, ubatch)
        cp.n_seq_max = 1
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        cp.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, cp)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise RuntimeError("llama.cpp could not create a context of %d tokens" % n_ctx)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self.batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)

    def prefill(self, ids):
        import numpy as np
        l, b = self.l, self.batch
        n = len(ids)
        b.n_tokens = n
        for i, t in enumerate(ids):
            b.token[i] = t
            b.pos[i] = i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = 1 if i == n - 1 else 0
        l.llama_memory_clear(l.llama_get_memory(self.ctx), True)  # cold KV cache
        c0 = time.process_time()
        t0 = time.perf_counter()
        rc = l.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError("llama_decode returned %d" % rc)
        lg = np.ctypeslib.as_array(l.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))
        top = int(np.argmax(lg))
        t1 = time.perf_counter()
        return (t1 - t0) * 1e3, (time.process_time() - c0) * 1e3, top

    def free(self):
        self.l.llama_batch_free(self.batch)
        self.l.llama_free(self.ctx)
        self.l.llama_model_free(self.model)


def kvr_sample(bench, model, C, threads, reps):
    r = subprocess.run([bench, "--ttft-only", "--model", model, "--contexts", str(C),
                        "--threads", str(threads), "--reps", str(reps)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        die("bench_prefill exited %d: %s" % (r.returncode, r.stderr.strip()))
    for ln in r.stdout.splitlines():
        f = ln.split()
        if ln and not ln.startswith("#") and f[0] == str(C):
            return float(f[1]), float(f[4]), float(f[2]), int(f[3])
    die("bench_prefill printed no TTFT for %d tokens:\n%s" % (C, r.stdout))


def sgemm_rate(bench, model, threads):
    r = subprocess.run([bench, "--rates-only", "--model", model, "--threads", str(threads),
                        "--reps", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        die("bench_prefill --rates-only exited %d: %s" % (r.returncode, r.stderr.strip()))
    rates = dict((f[0], float(f[1])) for f in (ln.split() for ln in r.stdout.splitlines())
                 if len(f) == 2 and f[0].startswith("sgemm_"))
    return rates["sgemm_2048"], rates["sgemm_2048_cpu"], rates["sgemm_shape"]


def int_list(s, flag):
    try:
        v = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        die("%s '%s': expected comma-separated integers" % (flag, s), 2)
    if not v or min(v) < 1:
        die("%s '%s': expected positive integers" % (flag, s), 2)
    return v


def default_reps(C):
    return 5 if C <= 128 else 3 if C <= 512 else 1


def main():
    ap = argparse.ArgumentParser(description="kvr single-rank prefill vs llama.cpp, side by side")
    ap.add_argument("--bindir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models",
                                                    "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--f32", help="the F32 conversion: reused when it exists, else made and kept")
    ap.add_argument("--lengths", default="128,512,2048,8192")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--formats", default="f32,q4_1")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--long-rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--ubatch", type=int, default=512)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.lengths, a.threads, a.rounds = "128,512", "1", 2
    lengths, threads = int_list(a.lengths, "--lengths"), int_list(a.threads, "--threads")
    formats = [f.strip().lower() for f in a.formats.split(",") if f.strip()]
    if not formats or any(f not in ("f32", "q4_1") for f in formats):
        die("--formats '%s': expected f32 and/or q4_1" % a.formats, 2)
    if a.rounds < 1 or a.long_rounds < 1 or a.reps < 0 or a.ubatch < 1:
        die("--rounds, --long-rounds, --ubatch >= 1; --reps >= 0", 2)
    bench = os.path.join(a.bindir, "bench", "bench_prefill")
    if not os.access(bench, os.X_OK):
        die("%s is not built (cmake --build %s --target bench_prefill)" % (bench, a.bindir), 2)
    if not os.path.exists(a.model):
        die("--model %s: no such file (scripts/fetch-model)" % a.model, 2)
    try:
        import numpy  # noqa: F401
        import llama_cpp
    except ImportError as e:
        die("llama_cpp / numpy not importable (%s): scripts/deps --reference" % e)

    @llama_cpp.llama_log_callback
    def quiet(level, text, user):
        pass
    llama_cpp.llama_log_set(quiet, None)
    llama_cpp.llama_backend_init()

    print("# vs_llamacpp: kvr single-rank prefill vs llama.cpp prompt processing, one run")
    for ln in build_info(llama_cpp):
        print("# llama.cpp " + ln)
    print("# llama.cpp: flash attention ON, n_batch = C, n_ubatch = min(C, %d), KV cache F16 "
          "(default), n_threads = n_threads_batch = T" % a.ubatch)
    print("# timed: C tokens into a cold KV cache, head + argmax of the last token (both sides);"
          " sample = median of R prefills after a warm-up; A B B A order (A = kvr)")
    td = None
    paths = {}
    if "f32" in formats:
        f32 = a.f32
        if not f32:
            td = tempfile.TemporaryDirectory(prefix="vs_llamacpp")
            f32 = os.path.join(td.name, "model-f32.gguf")
        if not os.path.exists(f32):
            t0 = time.time()
            if quantize_f32(a.model, f32) != 0:
                die("llama_model_quantize to F32 failed (%s -> %s)" % (a.model, f32))
            print("# F32 conversion (llama_model_quantize ALL_F32): %s in %.1f s" %
                  (f32, time.time() - t0))
        paths["f32"] = f32
    paths["q4_1"] = a.model
    summary = []
    for fmt in formats:
        for T in threads:
            peak, peak_cpu, shape = sgemm_rate(bench, paths[fmt], T)
            print("\n## %s weights, %d thread(s); OpenBLAS sgemm now: 2048^3 %.1f GFLOP/s (%.1f per "
                  "CPU second), model shape %.1f GFLOP/s" % (fmt.upper(), T, peak, peak_cpu, shape))
            print("%7s %5s %10s %10s %9s %15s %9s %9s %9s %8s %8s %6s" %
                  ("tokens", "pairs", "kvr_ms", "llama_ms", "speed", "(pair range)", "med/med",
                   "cpu_speed", "kvr_GF/s", "vs_sgemm", "(cpu)", "tok"))
            for C in lengths:
                rounds = a.rounds if C <= 2048 else a.long_rounds
                reps = a.reps or default_reps(C)
                ids = [(i * 7919 + 13) % 49152 for i in range(C)]
                side = LlamaSide(llama_cpp, paths[fmt], C, T, a.ubatch)
                if side.n_vocab != 49152:  # bench_prefill's ids use the model's V
                    ids = [(i * 7919 + 13) % side.n_vocab for i in range(C)]
                side.prefill(ids[:min(64, C)])  # warm-up, as kvr's
                ks, ls, rs, kc, lc = [], [], [], [], []
                flop = ktok = ltok = None

                def run_llama():
                    t, c = [], []
                    for _ in range(reps):
                        ms, cms, tok = side.prefill(ids)
                        t.append(ms), c.append(cms)
                    return statistics.median(t), statistics.median(c), tok
                for r in range(rounds):
                    if r % 2 == 0:
                        k, kcpu, flop, ktok = kvr_sample(bench, paths[fmt], C, T, reps)
                        lm, lcpu, ltok = run_llama()
                    else:
                        lm, lcpu, ltok = run_llama()
                        k, kcpu, flop, ktok = kvr_sample(bench, paths[fmt], C, T, reps)
                    ks.append(k), ls.append(lm), rs.append(lm / k), kc.append(kcpu), lc.append(lcpu)
                    print("#   %s T=%d C=%d round %d: kvr %.1f ms (cpu %.1f), llama.cpp %.1f ms "
                          "(cpu %.1f), speed %.3f" % (fmt, T, C, r, k, kcpu, lm, lcpu, lm / k),
                          flush=True)
                side.free()
                km, lmed = statistics.median(ks), statistics.median(ls)
                gf = flop / (km * 1e6)
                cs = statistics.median(lc) / statistics.median(kc)
                gf_cpu = flop / (statistics.median(kc) * 1e6)
                print("%7d %5d %10.1f %10.1f %9.3f %7.3f..%-7.3f %9.3f %9.3f %9.1f %8.3f %8.3f %s" %
                      (C, rounds, km, lmed, statistics.median(rs), min(rs), max(rs), lmed / km, cs,
                       gf, gf / peak, gf_cpu / peak_cpu, "%d/%d" % (ktok, ltok)), flush=True)
                summary.append((fmt, T, C, statistics.median(rs), min(rs), max(rs), cs, gf / peak,
                                gf_cpu / peak_cpu))
    print("\n# summary: speed kvr/llama.cpp (median of pair ratios, range; CPU-time ratio), "
          "kvr GFLOP/s / sgemm")
    for fmt, T, C, m, lo, hi, cs, fr, frc in summary:
        print("# %-5s T=%d %5d tokens: %.3fx (%.3f..%.3f) %-10s cpu %.3fx  vs_sgemm %.3f (cpu %.3f)"
              % (fmt, T, C, m, lo, hi, "ok" if m >= 1.0 else "BELOW 1.0x", cs, fr, frc))
    if td:
        td.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
