#!/usr/bin/env python3
"""reference_arch.py -- the architectures beyond SmolLM's llama against llama.cpp (issue 15
item 3), on small random-weight GGUF files written here at test time with gguf-py's GGUFWriter:
  qwen2         Qwen2-style: Q/K/V biases, NEOX (rotate-half) RoPE rows, pre-tokenizer qwen2;
  llama3-rope   llama with a rope_freqs tensor (Llama 3.1 RoPE scaling factors, computed as
                llama.cpp's converter does from rope_scaling {factor 8, low 1, high 4,
                original_max_position_embeddings 32}: most frequencies scaled at 200 tokens),
                pre-tokenizer llama-bpe;
  llama-bias    llama with the optional Q/K/V biases, pre-tokenizer smollm.
Each model has a byte-level BPE vocabulary (the 256 GPT-2 byte tokens, a few merges that cross
the pre-tokenizers' split points: digits, spaces, contractions) so that
  (a) kvr-tokenize and llama.cpp (vocab_only) give the same ids for reference_llamacpp.PROMPTS
      under each pre-tokenizer (the regexes; not the real Qwen2/Llama-3 merges, which no package
      here ships), and
  (b) kvr-run --dump-logits and llama.cpp (fp32 weights, F32 KV cache) give last-token logits with
      cosine >= 0.999 and the same top-1 for the same ids (a ~200-token prompt). For llama3-rope
      the same file without rope_freqs must differ from llama.cpp by far more (the factors are
      exercised).
Usage: reference_arch.py --bindir build/tools [--threads N]
Exit codes: 0 pass, 1 mismatch or error, 77 skipped (gguf or llama_cpp not importable).
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile

SKIP = 77
L, D, NH, NKV, HS, FF = 2, 128, 4, 2, 32, 192
PROMPT = ("the quick brown fox jumps over the lazy dog; it's 12345 and 2023 -- 'they've' "
          "we'll see.  Spaces   and\ttabs\nnew lines 42 ") * 2


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def vocab():
    b2u = bytes_to_unicode()
    toks = [b2u[b] for b in range(256)]
    merges = ["Ġ t", "h e", "Ġt he", "1 2", "12 3", "2 0", "' s", "' v", "'v e", "Ġ Ġ", "e r",
              "Ġ 4", "Ġ4 2", "o x", "Ġ Ċ"]
    for m in merges:
        toks.append(m.replace(" ", ""))
    toks.append("<|endoftext|>")
    types = [1] * (len(toks) - 1) + [3]
    return toks, types, merges


def llama3_factors(theta, factor=8.0, low=1.0, high=4.0, orig=32.0):
    out = []
    for i in range(HS // 2):
        freq = 1.0 / (theta ** (2 * i / HS))
        wl = 2 * math.pi / freq
        if wl < orig / high:
            out.append(1.0)
        elif wl > orig / low:
            out.append(factor)
        else:
            s = (orig / wl - low) / (high - low)
            out.append(1.0 / ((1 - s) / factor + s))
    return out


def write_model(path, arch, pre, bias, rope_freqs, seed, theta=None):
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    toks, types, merges = vocab()
    V = len(toks)
    if theta is None:
        theta = 500000.0 if rope_freqs else 10000.0
    w = gguf.GGUFWriter(path, arch)
    w.add_name("%s test" % arch)
    w.add_block_count(L)
    w.add_context_length(4096)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(V - 1)
    w.add_eos_token_id(V - 1)
    w.add_add_bos_token(False)

    def t(*shape, s=None):
        s = s if s is not None else 1.0 / math.sqrt(shape[-1])
        return (rng.standard_normal(shape) * s).astype(np.float32)

    w.add_tensor("token_embd.weight", t(V, D, s=1.0))
    w.add_tensor("output_norm.weight", (1 + 0.1 * rng.standard_normal(D)).astype(np.float32))
    w.add_tensor("output.weight", t(V, D))
    if rope_freqs:
        w.add_tensor("rope_freqs.weight", np.array(llama3_factors(theta), dtype=np.float32))
    for l in range(L):
        p = "blk.%d." % l
        w.add_tensor(p + "attn_norm.weight", (1 + 0.1 * rng.standard_normal(D)).astype(np.float32))
        w.add_tensor(p + "attn_q.weight", t(NH * HS, D, s=2.0 / math.sqrt(D)))
        w.add_tensor(p + "attn_k.weight", t(NKV * HS, D, s=2.0 / math.sqrt(D)))
        w.add_tensor(p + "attn_v.weight", t(NKV * HS, D))
        if bias:
            w.add_tensor(p + "attn_q.bias", t(NH * HS, s=0.5))
            w.add_tensor(p + "attn_k.bias", t(NKV * HS, s=0.5))
            w.add_tensor(p + "attn_v.bias", t(NKV * HS, s=0.5))
        w.add_tensor(p + "attn_output.weight", t(D, NH * HS))
        w.add_tensor(p + "ffn_norm.weight", (1 + 0.1 * rng.standard_normal(D)).astype(np.float32))
        w.add_tensor(p + "ffn_gate.weight", t(FF, D))
        w.add_tensor(p + "ffn_up.weight", t(FF, D))
        w.add_tensor(p + "ffn_down.weight", t(D, FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_logits(llama_cpp, np, path, ids, threads):
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=threads,
                          type_k=0, type_v=0, verbose=False)
    llm.eval(ids)
    n_vocab = llm.n_vocab()
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    out = np.array([ptr[i] for i in range(n_vocab)], dtype=np.float64)
    llm.close()
    return out


def kvr_logits(np, bindir, path, td, threads):
    out = os.path.join(td, "logits.f32")
    r = subprocess.run([os.path.join(bindir, "kvr-run"), "--model", path, "--prompt", PROMPT,
                        "--no-db", "--threads", str(threads), "--dump-logits", out],
                       capture_output=True)
    if r.returncode != 0:
        raise RuntimeError("kvr-run failed: " + r.stderr.decode(errors="replace"))
    return np.fromfile(out, dtype="<f4").astype(np.float64)


def cosine(a, b):
    return float(a @ b / (math.sqrt(a @ a) * math.sqrt(b @ b)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    try:
        import gguf  # noqa: F401
        import llama_cpp
        import numpy as np
    except ImportError as e:
        print("SKIP: %s" % e)
        return SKIP
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import reference_llamacpp as ref

    ok = True
    cases = [("qwen2", "qwen2", "qwen2", True, False), ("llama3-rope", "llama", "llama-bpe", False, True),
             ("llama-bias", "llama", "smollm", True, False)]
    with tempfile.TemporaryDirectory() as td:
        for i, (name, arch, pre, bias, rf) in enumerate(cases):
            path = os.path.join(td, name + ".gguf")
            write_model(path, arch, pre, bias, rf, 100 + i)
            print("== %s: arch %s, pre-tokenizer %s, biases %s, rope_freqs %s" % (name, arch, pre, bias, rf))
            # (a) tokenization under this pre-tokenizer
            voc = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
            texts = ref.PROMPTS + [PROMPT]
            kv = ref.kvr_tokenize(os.path.join(a.bindir, "kvr-tokenize"), path, texts, True)
            n_ok = 0
            for t, k in zip(texts, kv):
                want = voc.tokenize(t.encode(), add_bos=False, special=True)
                if want == k:
                    n_ok += 1
                else:
                    print("  ids differ for %r:\n    llama.cpp %s\n    kvr       %s" % (t[:40], want[:20], k[:20]))
            print("  (a) ids: %d/%d texts equal" % (n_ok, len(texts)))
            ok &= n_ok == len(texts)
            ids = voc.tokenize(PROMPT.encode(), add_bos=False, special=True)
            voc.close()
            # (b) logits
            want = llama_logits(llama_cpp, np, path, ids, a.threads)
            got = kvr_logits(np, a.bindir, path, td, a.threads)
            c = cosine(want, got)
            good = got.shape == want.shape and c >= 0.999 and int(np.argmax(got)) == int(np.argmax(want))
            print("  (b) %d prompt tokens: cosine %.7f, max |diff| %.3g, top-1 kvr %d llama.cpp %d: %s"
                  % (len(ids), c, float(np.max(np.abs(got - want))), int(np.argmax(got)),
                     int(np.argmax(want)), "PASS" if good else "FAIL"))
            ok &= good
            if rf:  # the same weights without the factors must be far off
                plain = os.path.join(td, name + "-plain.gguf")
                write_model(plain, arch, pre, bias, False, 100 + i, theta=500000.0)
                got_plain = kvr_logits(np, a.bindir, plain, td, a.threads)
                d_plain = float(np.max(np.abs(got_plain - want)))
                d_match = float(np.max(np.abs(got - want)))
                print("  the same file without rope_freqs: kvr's max |diff| to llama.cpp %.3g (with: %.3g)"
                      % (d_plain, d_match))
                ok &= d_plain > 10 * d_match
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
