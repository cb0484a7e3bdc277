#!/usr/bin/env python3
"""reference_llamacpp.py -- check kvr against an independent implementation: llama.cpp, through
llama-cpp-python (pip install llama-cpp-python==0.3.36).

  (a) tokenization: for a fixed set of prompts (ASCII, digits, code, whitespace runs,
      contractions, accents, CJK, emoji, special tokens, invalid UTF-8, a long mixed text), the
      token ids from llama_cpp.Llama(vocab_only=True).tokenize(...) must equal kvr-tokenize's,
      with special-token parsing on and off;
  (b) logits: for a fixed chat prompt, the real model's last-token logits from llama.cpp must
      agree with `kvr-run --dump-logits`: same top-1 id and cosine similarity >= 0.999 (the max
      absolute difference is printed; Q4_1 weights are dequantized to fp32 by kvr while llama.cpp
      multiplies in quantized form, so small differences are expected);
  (c) greedy decode, fp32: the real model converted to F32 with llama.cpp's own quantize API
      (llama_model_quantize, ftype ALL_F32: the same dequantization kvr does at load), so both
      sides multiply the same fp32 weights; llama.cpp keeps its KV cache in F32 too. For several
      fixed prompts `kvr-run --n-predict 40` must equal llama.cpp's greedy continuation (one
      token per eval, argmax) token for token for at least 32 tokens;
  (d) greedy decode, Q4_1: on the shipped file the two must agree at least up to the first
      near-tie -- the first step where the top-2 logit gap is below 0.05 in either's logits
      (kvr's from `--dump-logits` with --n-predict: every generated token's) -- and the test
      reports where that is and where they part (llama.cpp multiplies Q4_1 weights by
      Q8_1-quantized activations, kvr dequantized weights in fp32).

Usage: reference_llamacpp.py --bindir BUILD/tools --model models/SmolLM2-135M-Instruct.Q4_1.gguf
       [--skip-logits: (a) only] [--skip-decode: (a) and (b)]
Exit codes: 0 pass, 1 mismatch or error, 77 skipped (model file absent, llama_cpp not importable,
or kvr-run not built; part (a) still runs in the last case and its failure gives 1).
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile

SKIP = 77

PROMPTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "12345 3.14 1,000,000 2024-01-15 0x1F",
    "I'm sure you're right; we'll see, they've gone, she'd know, it's 'quoted' DON'T",
    "    leading spaces",
    "trailing spaces    ",
    "x  \t  y\t\tz",
    "line one\nline two\n\n\nline five\r\nwindows\r\n",
    "def f(x):\n    return x ** 2  # square\n\nprint(f(3))\n",
    "int main(void) { for (int i = 0; i < 10; ++i) printf(\"%d\\n\", i); }",
    "<div class=\"a\">&nbsp;</div> {\"key\": [1, 2, 3]}",
    "héllo wörld, café naïve résumé Ångström",
    "Привет, мир! Ελληνικά αβγ",
    "日本語のテキストと中文文本",
    "한국어 텍스트",
    "😀🎉 emoji 👍🏽 family 👨‍👩‍👧",
    "e\u0301 combining accent, \u00a0nbsp, \u2003em space, \u3000ideographic space",
    "١٢٣ Arabic digits, ²³ superscripts, Ⅻ roman, ＡＢＣ１２３ fullwidth",
    "<|im_start|>user\nHi<|im_end|>",
    "<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n<|im_start|>user\n"
    "What is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "a<|endoftext|>b<|im_end|><|im_start|>",
    "<file_sep><filename>main.py<gh_stars>10",
    "''''' 's 'S 'll 'LL",
    "$5.99 & 50% off!!! ... --- ??? (a) [b] {c}",
    " ",
    "\n",
    "",
    "The year 1984 had 365 days; π ≈ 3.14159 and e ≈ 2.71828.",
]

LOGITS_PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWhat is the capital of France? Answer in one word.<|im_end|>\n"
    "<|im_start|>assistant\n"
)


# (c), (d): prompts whose greedy continuations run past 32 tokens without an end token
GEN_PROMPTS = [
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n",
    "<|im_start|>user\nWrite a short poem about the ocean.<|im_end|>\n<|im_start|>assistant\n",
    "The history of the Roman Empire began",
]
GEN_TOKENS = 40
GEN_MIN_AGREE = 32
NEAR_TIE = 0.05


def long_text():
    """A deterministic ~20 KB mixed text: words, numbers, code, whitespace runs, unicode."""
    rng = random.Random(1234)
    parts = ["the", "of", "and", "tokenizer", "Llama", "KV-cache", "prefill", "runahead", "x",
             "isn't", "we've", "42", "3.5", "1000000", "\n", "\n\n", "  ", "\t", "    ", "é",
             "naïve", "日本", "😀", "{", "}", "()", "=>", "::", "#", "<|im_end|>", "¿qué?", "ß"]
    out = []
    while sum(len(p) for p in out) < 20000:
        out.append(rng.choice(parts))
        out.append(" " if rng.random() < 0.7 else "")
    return "".join(out)


def invalid_utf8_bytes():
    """Invalid UTF-8 (lone continuation bytes, truncated sequences, overlong forms, a surrogate)
    that llama.cpp handles byte-wise. Code points above U+10FFFF are left out: llama.cpp throws
    on those."""
    return (b"ok \x80\xbf lone, \xc3 trunc, \xe6\x97 trunc3, \xf0\x9f\x98 trunc4, \xc0\x80 overlong,"
            b" \xed\xa0\x80 surrogate, \xff\xfe bad leads, end\xc3")


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def kvr_tokenize(tool, model, texts, special, files=()):
    cmd = [tool, "--model", model] + (["--special"] if special else []) + list(texts)
    lines = []
    r = run(cmd)
    if r.returncode != 0:
        raise RuntimeError("kvr-tokenize failed (%d): %s" % (r.returncode, r.stderr.decode(errors="replace")))
    lines += r.stdout.decode().split("\n")[: len(texts)]
    for f in files:
        r = run([tool, "--model", model] + (["--special"] if special else []) + ["--file", f])
        if r.returncode != 0:
            raise RuntimeError("kvr-tokenize --file failed: " + r.stderr.decode(errors="replace"))
        lines.append(r.stdout.decode().split("\n")[0])
    return [[int(x) for x in line.split()] for line in lines]


def part_a(llm, tool, model):
    print("== (a) tokenization: llama.cpp vs kvr-tokenize")
    texts = PROMPTS + [long_text()]
    with tempfile.TemporaryDirectory() as td:
        fb = os.path.join(td, "invalid.bin")
        with open(fb, "wb") as f:
            f.write(invalid_utf8_bytes())
        names = [repr(t if len(t) < 50 else t[:47] + "...") for t in texts] + ["<invalid UTF-8 bytes>"]
        raws = [t.encode() for t in texts] + [invalid_utf8_bytes()]
        n_ok = n_all = 0
        n_tokens = 0
        for special in (True, False):
            got = kvr_tokenize(tool, model, texts, special, files=[fb])
            for name, raw, kv in zip(names, raws, got):
                ref = llm.tokenize(raw, add_bos=False, special=special)
                n_all += 1
                n_tokens += len(ref)
                if kv == ref:
                    n_ok += 1
                    continue
                i = next((i for i, (x, y) in enumerate(zip(kv, ref)) if x != y), min(len(kv), len(ref)))
                print("MISMATCH special=%s %s: first difference at token %d of %d/%d" %
                      (special, name, i, len(kv), len(ref)))
                print("   kvr       ", kv[max(0, i - 3): i + 6])
                print("   llama.cpp ", ref[max(0, i - 3): i + 6])
    print("ids match: %d/%d prompt cases (%d prompts x special on/off, %d reference tokens)" %
          (n_ok, n_all, n_all // 2, n_tokens))
    return n_ok == n_all


def part_b(model, bindir, threads):
    import numpy as np
    import llama_cpp

    print("== (b) last-token logits: llama.cpp vs kvr-run")
    kvr_run = os.path.join(bindir, "kvr-run")
    if not os.access(kvr_run, os.X_OK):
        print("kvr-run not built (%s)" % kvr_run)
        return SKIP
    llm = llama_cpp.Llama(model_path=model, n_ctx=2048, n_batch=2048, n_threads=threads,
                          logits_all=False, verbose=False)
    ids = llm.tokenize(LOGITS_PROMPT.encode(), add_bos=False, special=True)
    kv_ids = kvr_tokenize(os.path.join(bindir, "kvr-tokenize"), model, [LOGITS_PROMPT], True)[0]
    if kv_ids != ids:
        print("FAIL: prompt ids differ between kvr and llama.cpp")
        return 1
    llm.reset()
    llm.eval(ids)
    n_vocab = llm.n_vocab()
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    ref = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float64).copy()

    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "logits.f32")
        cmd = [kvr_run, "--model", model, "--prompt", LOGITS_PROMPT, "--threads", str(threads),
               "--dump-logits", out]
        r = run(cmd)
        if r.returncode != 0:
            print("FAIL: kvr-run exited %d: %s" % (r.returncode, r.stderr.decode(errors="replace")))
            return 1
        kv = np.fromfile(out, dtype="<f4").astype(np.float64)
    if kv.shape[0] != n_vocab:
        print("FAIL: kvr-run wrote %d logits, llama.cpp has %d" % (kv.shape[0], n_vocab))
        return 1
    cos = float(np.dot(kv, ref) / (np.linalg.norm(kv) * np.linalg.norm(ref)))
    maxdiff = float(np.max(np.abs(kv - ref)))
    top_kv, top_ref = int(np.argmax(kv)), int(np.argmax(ref))
    piece = lambda i: llm.detokenize([i], special=True).decode(errors="replace")
    print("prompt tokens: %d, vocab: %d" % (len(ids), n_vocab))
    print("top-1: kvr %d %r (%.4f)  llama.cpp %d %r (%.4f)" %
          (top_kv, piece(top_kv), kv[top_kv], top_ref, piece(top_ref), ref[top_ref]))
    print("top-5: kvr %s  llama.cpp %s" %
          ([int(i) for i in np.argsort(-kv)[:5]], [int(i) for i in np.argsort(-ref)[:5]]))
    print("cosine similarity: %.6f   max abs diff: %.4f   (logit range %.2f..%.2f)" %
          (cos, maxdiff, ref.min(), ref.max()))
    ok = top_kv == top_ref and cos >= 0.999
    print("logits: %s (need same top-1 and cosine >= 0.999)" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


def quantize_f32(src, dst):
    """llama.cpp's own conversion of src to an all-F32 GGUF (its log lines silenced)."""
    import ctypes
    import llama_cpp
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = 0  # LLAMA_FTYPE_ALL_F32
    p.allow_requantize = True
    p.nthread = 1
    sys.stdout.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as dn:
            os.dup2(dn.fileno(), 2)
            rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return rc


def llama_greedy(llm, ids, n):
    """llama.cpp's greedy continuation: one token per eval, the argmax of each step's logits
    (first on ties, as kvr), ending after an end-of-generation token. Returns ids and logits."""
    import numpy as np
    import llama_cpp
    llm.reset()
    llm.eval(ids)
    out, rows = [], []
    for _ in range(n):
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        lg = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64).copy()
        t = int(np.argmax(lg))
        out.append(t)
        rows.append(lg)
        if llama_cpp.llama_token_is_eog(llm._model.vocab, t):
            break
        llm.eval([t])
    return out, rows


def kvr_greedy(bindir, model, prompt, n, threads, td):
    """kvr-run's greedy generation with the logits of every generated token."""
    import numpy as np
    out = os.path.join(td, "gen.f32")
    cmd = [os.path.join(bindir, "kvr-run"), "--model", model, "--prompt", prompt, "--no-db",
           "--threads", str(threads), "--n-predict", str(n), "--json", "--dump-logits", out]
    r = run(cmd)
    if r.returncode != 0:
        raise RuntimeError("kvr-run exited %d: %s" % (r.returncode, r.stderr.decode(errors="replace")))
    import json
    gen = json.loads(r.stdout.decode())["generated"]
    rows = np.fromfile(out, dtype="<f4").astype(np.float64).reshape(len(gen), -1)
    return gen, rows


def top2_gap(lg):
    import numpy as np
    a, b = np.partition(lg, -2)[-2:]
    return float(b - a)


def part_cd(model, bindir, threads):
    import llama_cpp
    print("== (c) greedy decode, fp32 weights (llama.cpp's F32 conversion): llama.cpp vs kvr-run")
    ok = True
    with tempfile.TemporaryDirectory() as td:
        f32 = os.path.join(td, "model-f32.gguf")
        if quantize_f32(model, f32) != 0:
            print("FAIL: llama_model_quantize to F32 failed")
            return 1
        tok = os.path.join(bindir, "kvr-tokenize")
        for label, path, part in (("fp32", f32, "c"), ("Q4_1", model, "d")):
            if part == "d":
                print("== (d) greedy decode, the shipped Q4_1 file: agreement up to the first "
                      "near-tie (top-2 gap < %.2f)" % NEAR_TIE)
            # GGML_TYPE_F32 K/V cache: the same cache arithmetic as kvr's
            llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=threads,
                                  type_k=0, type_v=0, verbose=False)
            for prompt in GEN_PROMPTS:
                name = repr(prompt if len(prompt) < 40 else prompt[:37] + "...")
                ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
                if kvr_tokenize(tok, model, [prompt], True)[0] != ids:
                    print("FAIL %s: prompt ids differ between kvr and llama.cpp" % name)
                    ok = False
                    continue
                ref, ref_rows = llama_greedy(llm, ids, GEN_TOKENS)
                got, got_rows = kvr_greedy(bindir, path, prompt, GEN_TOKENS, threads, td)
                agree = 0
                while agree < min(len(ref), len(got)) and ref[agree] == got[agree]:
                    agree += 1
                same = ref == got
                steps = min(len(ref), len(got), agree + 1)  # the common prefix and the parting step
                maxdiff = max(float(abs(ref_rows[i] - got_rows[i]).max()) for i in range(steps))
                gaps = [min(top2_gap(ref_rows[i]), top2_gap(got_rows[i])) for i in range(steps)]
                tie = next((i for i, g in enumerate(gaps) if g < NEAR_TIE), None)
                end = "both end" if same and len(ref) < GEN_TOKENS else "%d/%d tokens" % (len(got), len(ref))
                tie_s = "none" if tie is None else "step %d (gap %.4f)" % (tie, gaps[tie])
                if part == "c":
                    good = agree >= GEN_MIN_AGREE
                    print("%s %s: %d tokens agree (%s), max |logit diff| %.2e, smallest top-2 gap "
                          "%.4f, first near-tie %s" % ("ok  " if good else "FAIL", name, agree, end,
                                                       maxdiff, min(gaps), tie_s))
                else:
                    good = same or (tie is not None and tie <= agree)
                    part_s = "identical" if same else "part at step %d (%d vs %d)" % (
                        agree, got[agree] if agree < len(got) else -1, ref[agree] if agree < len(ref) else -1)
                    print("%s %s: %d tokens agree, %s; first near-tie %s; max |logit diff| %.3f "
                          "before parting" % ("ok  " if good else "FAIL", name, agree, part_s,
                                              tie_s, maxdiff))
                ok = ok and good
            del llm
    print("decode: %s (fp32: >= %d tokens agree; Q4_1: agree up to the first near-tie)" %
          ("PASS" if ok else "FAIL", GEN_MIN_AGREE))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bindir", required=True, help="directory with kvr-tokenize and kvr-run")
    ap.add_argument("--model", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-logits", action="store_true", help="run part (a) only")
    ap.add_argument("--skip-decode", action="store_true", help="run parts (a) and (b) only")
    args = ap.parse_args()

    if not os.path.isfile(args.model):
        print("SKIP: model file %s not found (run scripts/fetch-model)" % args.model)
        return SKIP
    try:
        import llama_cpp
    except Exception as e:  # ImportError, or a broken shared library
        print("SKIP: llama_cpp not importable (%s); pip install llama-cpp-python==0.3.36" % e)
        return SKIP
    tool = os.path.join(args.bindir, "kvr-tokenize")
    if not os.access(tool, os.X_OK):
        print("FAIL: %s not built" % tool)
        return 1
    print("llama-cpp-python %s, model %s" % (getattr(llama_cpp, "__version__", "?"), args.model))
    llm = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False)
    try:
        ok_a = part_a(llm, tool, args.model)
    except RuntimeError as e:
        print("FAIL:", e)
        return 1
    del llm
    if args.skip_logits:
        return 0 if ok_a else 1
    rc_b = part_b(args.model, args.bindir, args.threads)
    rc_cd = 0
    if rc_b != SKIP and not args.skip_decode:
        try:
            rc_cd = part_cd(args.model, args.bindir, args.threads)
        except RuntimeError as e:
            print("FAIL:", e)
            rc_cd = 1
    if not ok_a or rc_cd:
        return 1
    return rc_b


if __name__ == "__main__":
    sys.exit(main())
