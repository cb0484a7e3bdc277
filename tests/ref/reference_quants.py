#!/usr/bin/env python3
"""reference_quants.py -- kvr's GGUF tensor types against implementations nobody here wrote.

  (a) blocks: random bytes in every block type kvr reads (fp16 scale fields kept finite) are
      dequantized by kvr (quant_dump blocks) and by gguf-py's numpy code
      (gguf.quants.dequantize); the fp32 results must be bit-identical. gguf-py has no Q8_K
      dequantizer, so Q8_K blocks (written by ggml's quantize_row_q8_K_ref from random floats,
      plus random bytes) are compared with ggml's own C dequantize_row_q8_K, called through
      ctypes from llama-cpp-python's libggml-base.
  (b) files: a synthetic F32 Llama model with every dimension a multiple of 256 is written with
      gguf-py and quantized by llama.cpp's own quantizer (llama_model_quantize) to each file type
      below; kvr loads every file (quant_dump model) and each tensor must equal gguf-py's
      dequantization of the same bytes bit for bit. The tensor types each file really holds are
      printed, and together the files must cover every quantized type kvr reads except Q8_K.
  (c) real model: models/SmolLM2-135M-Instruct.Q4_1.gguf requantized by llama.cpp to Q4_K_M,
      Q5_K_M, Q6_K and IQ4_XS (allow_requantize: llama.cpp dequantizes the Q4_1 weights to fp32
      and quantizes those, the same values an F32 conversion would hold, without writing a
      540 MB intermediate file). Per file: the types it holds, every tensor bit-identical to
      gguf-py, and kvr-run's last-token logits against llama.cpp's on the same file and token ids
      (same top-1, cosine >= 0.999; reference_llamacpp.py part (b)).

All files are written at test time into a temporary directory and deleted.
Usage: reference_quants.py --bindir BUILD/tools --dump BUILD/tests/quant_dump --model M.gguf
Exit codes: 0 pass, 1 mismatch or error, 77 skipped (gguf, numpy or llama_cpp not importable; or
the model file absent -- then (a) and (b) still run, and KVR_REQUIRE_MODEL=1 turns the skip
into a failure).
"""
import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import time

SKIP = 77
QK_K = 256
_quiet_log = None

# llama.cpp file types for (b), and the types (c) asks for
SYNTH_FTYPES = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M", "Q4_K_M",
                "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"]
REAL_FTYPES = ["Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_XS"]

GLOBAL_NAMES = ["token_embd", "output_norm", "output"]
LAYER_NAMES = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
               "ffn_up", "ffn_down"]


def slot_name(s):
    if s < 3:
        return GLOBAL_NAMES[s] + ".weight"
    return "blk.%d.%s.weight" % ((s - 3) // 9, LAYER_NAMES[(s - 3) % 9])


def same_bits(a, b):
    """Bit-identical fp32 arrays (two NaNs count as equal: F16 NaN payloads may be quieted)."""
    import numpy as np

    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    if a.shape != b.shape:
        return False, -1
    eq = (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))
    bad = int((~eq).sum())
    return bad == 0, (int(np.argmin(eq)) if bad else -1)


def run(cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# ----------------------------------------------------------------------------- (a) blocks

def kvr_blocks(dump, td, qtype, n, raw):
    import numpy as np

    fin, fout = os.path.join(td, "blocks.bin"), os.path.join(td, "blocks.f32")
    raw.tofile(fin)
    r = run([dump, "blocks", str(int(qtype)), str(n), fin, fout])
    if r.returncode != 0:
        raise RuntimeError("quant_dump blocks %d failed: %s" % (int(qtype), r.stderr.decode(errors="replace")))
    return np.fromfile(fout, dtype="<f4")


def ggml_lib():
    import llama_cpp

    path = os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so")
    try:
        lib = ctypes.CDLL(path)
        for f in ("quantize_row_q8_K_ref", "dequantize_row_q8_K"):
            getattr(lib, f).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            getattr(lib, f).restype = None
    except (OSError, AttributeError) as e:
        raise RuntimeError("ggml's Q8_K reference functions not found in %s: %s" % (path, e))
    return lib


def part_a(dump, td):
    import numpy as np
    import gguf

    T = gguf.GGMLQuantizationType
    print("== (a) random blocks: kvr vs gguf-py (Q8_K: vs ggml's C dequantizer)")
    # byte offsets of the fp16 scale fields, kept finite so values compare without inf/NaN noise
    halves = {T.F32: None, T.F16: [], T.BF16: [], T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0],
              T.Q5_1: [0, 2], T.Q8_0: [0], T.IQ4_NL: [0], T.Q2_K: [80, 82], T.Q3_K: [108],
              T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208], T.IQ4_XS: [0]}
    rng = np.random.default_rng(20261206)
    ok = True
    for qt, offs in halves.items():
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        nb = 2048 if bs == 1 else 512
        if offs is None:  # F32: random finite floats
            raw = rng.standard_normal(nb).astype("<f4").view(np.uint8).reshape(nb, 4)
        else:
            raw = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)
            for o in offs:
                h = (rng.standard_normal(nb) * rng.choice([1e-4, 1e-2, 1.0], nb)).astype("<f2")
                raw[:, o:o + 2] = h.view(np.uint8).reshape(nb, 2)
        raw = raw.reshape(-1)
        n = nb * bs
        kv = kvr_blocks(dump, td, qt, n, raw)
        ref = np.asarray(gguf.quants.dequantize(raw, qt), dtype=np.float32).reshape(-1)
        same, first = same_bits(kv, ref)
        print("  %-7s %6d elements: %s" % (qt.name, n, "bit-identical" if same else
                                               "MISMATCH at %d (%r vs %r)" % (first, kv[first], ref[first])))
        ok &= same
    # Q8_K: ggml quantizes random floats (and we add random bytes with finite scales)
    lib = ggml_lib()
    n = QK_K * 256
    x = (rng.standard_normal(n) * rng.choice([1e-3, 0.1, 10.0], n)).astype(np.float32)
    q = np.zeros(n // QK_K * 292, dtype=np.uint8)
    lib.quantize_row_q8_K_ref(x.ctypes.data, q.ctypes.data, n)
    rb = rng.integers(0, 256, size=(64, 292), dtype=np.uint8)
    rb[:, 0:4] = (rng.standard_normal(64) * 0.01).astype("<f4").view(np.uint8).reshape(64, 4)
    q = np.concatenate([q, rb.reshape(-1)])
    n += 64 * QK_K
    ref = np.zeros(n, dtype=np.float32)
    lib.dequantize_row_q8_K(q.ctypes.data, ref.ctypes.data, n)
    kv = kvr_blocks(dump, td, T.Q8_K, n, q)
    same, first = same_bits(kv, ref)
    print("  %-7s %6d elements: %s (vs ggml dequantize_row_q8_K)" %
          ("Q8_K", n, "bit-identical" if same else "MISMATCH at %d" % first))
    return ok and same


# ----------------------------------------------------------------------------- (b), (c) files

def llama_quantize(src, dst, ftype, threads, allow_requantize=False):
    import llama_cpp

    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + ftype)
    p.nthread = threads
    p.allow_requantize = allow_requantize
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError("llama_model_quantize(%s -> %s) returned %d" % (src, ftype, rc))


def file_types(path):
    """{type name: number of tensors} of a GGUF, as gguf-py reads it."""
    import gguf

    counts = {}
    for t in gguf.GGUFReader(path).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return counts


def compare_file(dump, path, td):
    """kvr's loaded tensors vs gguf-py's dequantization of the same bytes; returns (ok, n, types)."""
    import numpy as np
    import gguf

    out = os.path.join(td, "model.f32")
    r = run([dump, "model", path, out])
    if r.returncode != 0:
        print("  FAIL: kvr could not load %s: %s" % (os.path.basename(path), r.stderr.decode(errors="replace").strip()))
        return False, 0, set()
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    kv = np.memmap(out, dtype="<f4", mode="r")
    at = 0
    ok = True
    n_el = 0
    seen = set()
    for line in r.stdout.decode().split("\n"):
        if not line.strip():
            continue
        s, n = (int(v) for v in line.split())
        name = slot_name(s)
        t = tensors.get(name)
        if t is None:
            print("  FAIL: kvr wrote %s, which the file does not hold" % name)
            return False, n_el, seen
        ref = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)
        same, first = same_bits(kv[at:at + n], ref)
        if not same:
            print("  MISMATCH %s (%s): element %d: kvr %r, gguf-py %r" % (
                name, t.tensor_type.name, first, float(kv[at + first]) if first >= 0 else None,
                float(ref[first]) if 0 <= first < ref.size else None))
            ok = False
        seen.add(t.tensor_type.name)
        at += n
        n_el += n
    if at != kv.size:
        print("  FAIL: dump holds %d values, slots account for %d" % (kv.size, at))
        ok = False
    del kv
    os.unlink(out)
    return ok, n_el, seen


def write_synthetic(path):
    """An F32 Llama model, 2 layers, D 256, FF 512, 4 heads of 64 (2 KV), vocab 512, with rows of
    very different scales, outliers and an all-zero row in every matrix, and a tokenizer."""
    import numpy as np
    import gguf

    L, D, NH, NKV, HS, FF, V = 2, 256, 4, 2, 64, 512, 512
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("kvr quant test")
    w.add_block_count(L)
    w.add_context_length(256)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    toks = ["<|endoftext|>"] + [chr(0x100 + i) for i in range(V - 1)]
    w.add_token_list(toks)
    w.add_token_types([3] + [1] * (V - 1))
    w.add_token_merges([])
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)

    def mat(rows, cols):
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        x *= (10.0 ** rng.uniform(-3, 0.5, size=(rows, 1))).astype(np.float32)
        x[rng.integers(0, rows, 8), rng.integers(0, cols, 8)] *= 20  # outliers
        x[rng.integers(0, rows)] = 0  # an all-zero row
        x[rng.integers(0, rows), : cols // 2] += 0.75  # a row with an offset (mins matter)
        return x

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w.add_tensor("token_embd.weight", mat(V, D))
    w.add_tensor("output_norm.weight", norm(D))
    w.add_tensor("output.weight", mat(V, D))
    for l in range(L):
        w.add_tensor("blk.%d.attn_norm.weight" % l, norm(D))
        w.add_tensor("blk.%d.attn_q.weight" % l, mat(NH * HS, D))
        w.add_tensor("blk.%d.attn_k.weight" % l, mat(NKV * HS, D))
        w.add_tensor("blk.%d.attn_v.weight" % l, mat(NKV * HS, D))
        w.add_tensor("blk.%d.attn_output.weight" % l, mat(D, NH * HS))
        w.add_tensor("blk.%d.ffn_norm.weight" % l, norm(D))
        w.add_tensor("blk.%d.ffn_gate.weight" % l, mat(FF, D))
        w.add_tensor("blk.%d.ffn_up.weight" % l, mat(FF, D))
        w.add_tensor("blk.%d.ffn_down.weight" % l, mat(D, FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def fmt_types(counts):
    return ", ".join("%s x%d" % (k, v) for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def part_b(dump, td, threads):
    print("== (b) llama.cpp-quantized synthetic model (D 256, FF 512): kvr vs gguf-py, every tensor")
    src = os.path.join(td, "synthetic-f32.gguf")
    write_synthetic(src)
    ok = True
    covered = set()
    for ft in SYNTH_FTYPES:
        dst = os.path.join(td, "synthetic-%s.gguf" % ft)
        llama_quantize(src, dst, ft, threads)
        good, n, seen = compare_file(dump, dst, td)
        covered |= seen
        print("  %-7s %s: %s" % (ft, "bit-identical" if good else "FAIL", fmt_types(file_types(dst))))
        ok &= good
        os.unlink(dst)
    want = {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
            "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"}
    missing = want - covered
    print("  types compared: %s%s" % (" ".join(sorted(covered)),
                                       ("; NOT COVERED: " + " ".join(sorted(missing))) if missing else ""))
    return ok and not missing


def part_c(dump, td, model, bindir, threads):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import reference_llamacpp

    print("== (c) %s requantized by llama.cpp: types, tensors vs gguf-py, logits vs llama.cpp"
          % os.path.basename(model))
    ok = True
    for ft in REAL_FTYPES:
        dst = os.path.join(td, "smollm2-%s.gguf" % ft)
        t0 = time.time()
        llama_quantize(model, dst, ft, threads, allow_requantize=True)
        print("-- %s (quantized in %.0f s, %.1f MB): %s" % (ft, time.time() - t0,
                                                          os.path.getsize(dst) / 1e6, fmt_types(file_types(dst))))
        good, n, _ = compare_file(dump, dst, td)
        print("  tensors: %s (%d values)" % ("bit-identical to gguf-py" if good else "FAIL", n))
        rc = reference_llamacpp.part_b(dst, bindir, threads)
        ok &= good and rc == 0
        os.unlink(dst)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bindir", required=True, help="directory with kvr-tokenize and kvr-run")
    ap.add_argument("--dump", required=True, help="the quant_dump test helper")
    ap.add_argument("--model", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-real", action="store_true", help="parts (a) and (b) only")
    args = ap.parse_args()
    try:
        import numpy  # noqa: F401
        import gguf
        import llama_cpp  # noqa: F401
    except Exception as e:  # ImportError, or a broken shared library
        print("SKIP: %s (pip install numpy gguf==0.19.0 llama-cpp-python==0.3.36)" % e)
        return SKIP
    if not os.access(args.dump, os.X_OK):
        print("FAIL: %s not built" % args.dump)
        return 1
    print("gguf-py %s, llama-cpp-python %s" % (getattr(gguf, "__version__", "?"),
                                              getattr(llama_cpp, "__version__", "?")))
    global _quiet_log  # llama.cpp keeps the pointer: the callback must outlive every call
    _quiet_log = llama_cpp.llama_log_callback(lambda level, text, user: None)
    llama_cpp.llama_backend_init()
    llama_cpp.llama_log_set(_quiet_log, None)
    ok = True
    with tempfile.TemporaryDirectory(prefix="kvr_quants_") as td:
        try:
            ok &= part_a(args.dump, td)
            ok &= part_b(args.dump, td, args.threads)
            if args.skip_real:
                return 0 if ok else 1
            if not os.path.isfile(args.model):
                print("SKIP (c): model file %s not found (run scripts/fetch-model)" % args.model)
                if os.environ.get("KVR_REQUIRE_MODEL"):
                    return 1
                return SKIP if ok else 1
            ok &= part_c(args.dump, td, args.model, args.bindir, args.threads)
        except RuntimeError as e:
            print("FAIL:", e)
            return 1
    print("reference_quants: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
