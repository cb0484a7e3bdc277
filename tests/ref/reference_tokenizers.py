#!/usr/bin/env python3
"""reference_tokenizers.py -- the tokenizers beyond SmolLM2's byte-level BPE, checked against
implementations nobody here wrote. Files are written at test time (gguf-py); none is committed.

  --part spm   SentencePiece BPE (tokenizer.ggml.model = llama, as Llama 1/2, Mistral, TinyLlama):
               no SentencePiece vocabulary can be had offline, so a synthetic one is built: the
               <unk>/<s>/</s> tokens, the 256 <0xXX> byte-fallback tokens, the characters of a small
               corpus and a few hundred pieces learnt from it by BPE (score = -merge index, some
               scores tied on purpose), two chat control tokens. A tiny llama GGUF carries it;
               llama.cpp (llama_cpp.Llama(vocab_only=True)) and kvr-tokenize must give the same
               ids for the fixed prompts of reference_llamacpp.py, 400 random strings (spaces,
               digits, unicode, emoji that need byte fallback, special tokens) and invalid UTF-8,
               with special-token parsing on and off, with and without BOS, with add_space_prefix
               on and off; and every token's piece (kvr-tokenize --decode) must equal
               llama_token_to_piece's.
  --part hf    HF directories: a tokenizer.json in the format transformers writes (model BPE with
               vocab and merges, added_tokens, the SmolLM2 pre-tokenizer Sequence[Digits,
               ByteLevel], ByteLevel decoder) made from the real SmolLM2 GGUF's vocabulary and
               merges, next to a tiny config.json + model.safetensors; kvr-tokenize on that
               directory must give the GGUF tokenizer's ids on the same texts. A directory without
               tokenizer.json must fail with a message naming it. Needs the model, not llama.cpp.
  --part qwen  optional: the DeepSeek-R1-Distill-Qwen-7B vocabulary (152064 tokens, 151387 merges,
               pre deepseek-r1-qwen) in a vocab-only GGUF made by scripts/qwen-vocab; runs only
               when $KVR_QWEN_VOCAB names that file (else exit 77): kvr-tokenize against llama.cpp
               on English, code, Chinese, digits, whitespace runs and special tokens; prints the
               agreement figure.

Usage: reference_tokenizers.py --bindir build/tools --part spm|hf|qwen [--model SMOLLM2.gguf]
Exit codes: 0 pass, 1 mismatch or error, 77 skipped (gguf/llama_cpp not importable, model or
$KVR_QWEN_VOCAB absent).
"""
import argparse
import collections
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

SKIP = 77
SP = "\u2581"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_llamacpp as ref  # noqa: E402  (PROMPTS, kvr_tokenize, invalid_utf8_bytes)

CORPUS = """The quick brown fox jumps over the lazy dog. A tokenizer splits text into pieces;
the pieces are looked up in a vocabulary of tokens. Llama and Mistral use SentencePiece with byte
fallback: characters outside the vocabulary become <0xXX> byte tokens. Numbers such as 12345,
3.14159 and 2024-01-15 are split into digits. I'm sure you're right; we'll see, they've gone.
def main(): return sum(x * x for x in range(10))  # squares
héllo wörld café naïve résumé Ångström über straße
日本語のテキスト 中文文本 한국어
prefill decode attention transformer layer runahead parallel context cache tensor""".split("\n")


def learn_spm_vocab(n_merges=320, tie=3):
    """A SentencePiece-style BPE vocabulary learnt from CORPUS: pieces with scores (tied in groups
    of tie), and the merges that made them."""
    words = collections.Counter()
    for line in CORPUS:
        for w in line.split(" "):
            if w:
                words[SP + w] += 1
    chars = sorted({c for w in words for c in w})
    seqs = {w: list(w) for w in words}
    pieces, made = [], []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, cnt in words.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += cnt
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        ab = a + b
        pieces.append(ab)
        made.append((a, b))
        for w in words:
            s, out, i = seqs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(ab)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    toks, types, scores = ["<unk>", "<s>", "</s>"], [2, 3, 3], [0.0, 0.0, 0.0]
    for b in range(256):
        toks.append("<0x%02X>" % b)
        types.append(6)
        scores.append(0.0)
    seen = set(toks)
    merges = []
    for i, p in enumerate(pieces):
        if p in seen:
            continue
        seen.add(p)
        toks.append(p)
        types.append(1)
        scores.append(-float(i // tie))  # ties: leftmost-first must decide
        merges.append(" ".join(made[i]))
    for i, c in enumerate(chars):
        if c in seen:
            continue
        seen.add(c)
        toks.append(c)
        types.append(1)
        scores.append(-1000.0 - i)
    for s in ("<|im_start|>", "<|im_end|>"):
        toks.append(s)
        types.append(3)
        scores.append(0.0)
    return toks, types, scores, merges


def write_gguf(path, tokenizer, toks, types, extra):
    """A tiny llama GGUF (random weights, 1 layer) carrying the given vocabulary. extra(w) adds
    the tokenizer-specific keys."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(7)
    V, D, FF, NH = len(toks), 32, 64, 2
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tokenizer test")
    w.add_block_count(1)
    w.add_context_length(2048)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_head_count(NH)
    w.add_head_count_kv(NH)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model(tokenizer)
    w.add_token_list(toks)
    w.add_token_types(types)
    extra(w)

    def t(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    w.add_tensor("token_embd.weight", t(V, D))
    w.add_tensor("output_norm.weight", np.ones(D, dtype=np.float32))
    w.add_tensor("output.weight", t(V, D))
    p = "blk.0."
    for name, shape in (("attn_norm", (D,)), ("attn_q", (D, D)), ("attn_k", (D, D)),
                        ("attn_v", (D, D)), ("attn_output", (D, D)), ("ffn_norm", (D,)),
                        ("ffn_gate", (FF, D)), ("ffn_up", (FF, D)), ("ffn_down", (D, FF))):
        w.add_tensor(p + name + ".weight", np.ones(shape, dtype=np.float32) if len(shape) == 1 else t(*shape))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def random_texts(rng, n, alphabet_extra=""):
    words = [w for line in CORPUS for w in line.split(" ") if w]
    extra = ["  ", "   ", "\t", "\n", "\n\n", " \n ", "0", "7", "42", "2024", "3.5", "😀", "🎉",
             "👍🏽", "∑", "π", "€", "Ж", "ß", "é", "e\u0301", "\u00a0", "\u3000", "<|im_start|>",
             "<|im_end|>", "<s>", "</s>", "<unk>", "<0x41>", "▁", "▁▁", "''", "'s"] + list(alphabet_extra)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.55:
                parts.append(rng.choice(words))
            elif r < 0.85:
                parts.append(rng.choice(extra))
            else:
                parts.append("".join(chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x2fff),
                                                      rng.randint(0x4e00, 0x9fff), rng.randint(0x1f300, 0x1f6ff)]))
                                     for _ in range(rng.randint(1, 4))))
            parts.append(" " if rng.random() < 0.6 else "")
        out.append("".join(parts))
    return out


def parse_pieces(line):
    """kvr-tokenize --decode output: double-quoted C-escaped strings separated by spaces."""
    out, i = [], 0
    b = line.encode()
    while i < len(b):
        if b[i:i + 1] != b'"':
            i += 1
            continue
        i += 1
        cur = bytearray()
        while b[i:i + 1] != b'"':
            if b[i:i + 1] == b"\\":
                c = b[i + 1:i + 2]
                if c == b"x":
                    cur.append(int(b[i + 2:i + 4], 16))
                    i += 4
                    continue
                cur += {b"n": b"\n", b"r": b"\r", b"t": b"\t"}.get(c, c)
                i += 2
            else:
                cur.append(b[i])
                i += 1
        out.append(bytes(cur))
        i += 1
    return out


def compare_ids(llm, tool, path, texts, raws_extra=(), bos=False, label=""):
    """ids of llama.cpp and kvr-tokenize for texts (+ raw byte strings via --file); returns
    (n_ok, n_all, n_tokens)."""
    n_ok = n_all = n_tok = 0
    with tempfile.TemporaryDirectory() as td:
        files = []
        for k, raw in enumerate(raws_extra):
            f = os.path.join(td, "raw%d.bin" % k)
            with open(f, "wb") as fh:
                fh.write(raw)
            files.append(f)
        for special in (True, False):
            cmd_tool = tool if not bos else tool + ["--bos"]
            got = kvr_tokenize(cmd_tool, path, texts, special, files)
            for raw, kv in zip([t.encode() for t in texts] + list(raws_extra), got):
                want = llm.tokenize(raw, add_bos=bos, special=special)
                n_all += 1
                n_tok += len(want)
                if want == kv:
                    n_ok += 1
                elif n_all - n_ok <= 5:
                    print("  %sids differ (special=%s) for %r:\n    llama.cpp %s\n    kvr       %s"
                          % (label, special, raw[:60], want[:24], kv[:24]))
    return n_ok, n_all, n_tok


def kvr_tokenize(tool, model, texts, special, files=()):
    """Like reference_llamacpp.kvr_tokenize, with extra flags in tool (a list)."""
    base = list(tool) + ["--model", model] + (["--special"] if special else [])
    lines = []
    if texts:
        r = ref.run(base + list(texts))
        if r.returncode != 0:
            raise RuntimeError("kvr-tokenize failed (%d): %s" % (r.returncode, r.stderr.decode(errors="replace")))
        lines += r.stdout.decode().split("\n")[: len(texts)]
    for f in files:
        r = ref.run(base + ["--file", f])
        if r.returncode != 0:
            raise RuntimeError("kvr-tokenize --file failed: " + r.stderr.decode(errors="replace"))
        lines.append(r.stdout.decode().split("\n")[0])
    return [[int(x) for x in line.split()] for line in lines]


def llama_piece(llama_cpp, vocab, tid):
    import ctypes

    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, tid, buf, 256, 0, True)
    return buf.raw[:n]


def part_spm(bindir):
    try:
        import gguf  # noqa: F401
        import llama_cpp
    except ImportError as e:
        print("SKIP: %s" % e)
        return SKIP
    tool = [os.path.join(bindir, "kvr-tokenize")]
    toks, types, scores, _ = learn_spm_vocab()
    print("== SentencePiece BPE: synthetic vocabulary of %d tokens (%d byte tokens)" % (len(toks), 256))
    rng = random.Random(4321)
    texts = [t for t in ref.PROMPTS] + random_texts(rng, 400) + [ref.long_text()[:4000]]
    raws = [ref.invalid_utf8_bytes(), b"\xe0ab \xf0\x9f cd \x80", "▁lead ▁▁".encode()]
    ok = True
    with tempfile.TemporaryDirectory() as td:
        for prefix in (True, False):
            path = os.path.join(td, "spm-%d.gguf" % prefix)

            def extra(w, prefix=prefix):
                w.add_token_scores(scores)
                w.add_bos_token_id(1)
                w.add_eos_token_id(2)
                w.add_unk_token_id(0)
                w.add_add_bos_token(True)
                w.add_add_space_prefix(prefix)

            write_gguf(path, "llama", toks, types, extra)
            llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
            n_ok, n_all, n_tok = compare_ids(llm, tool, path, texts, raws, label="prefix=%d " % prefix)
            print("  add_space_prefix %s: ids equal in %d/%d cases (%d reference tokens)"
                  % (prefix, n_ok, n_all, n_tok))
            ok &= n_ok == n_all
            if prefix:
                b_ok, b_all, _ = compare_ids(llm, tool, path, texts[:40] + [""], bos=True, label="bos ")
                print("  with BOS: ids equal in %d/%d cases" % (b_ok, b_all))
                ok &= b_ok == b_all
                # pieces: kvr-tokenize --decode against llama_token_to_piece (special = true)
                # for every id that the tokens' own texts, the prompts and the raw bytes produce
                vocab = llama_cpp.llama_model_get_vocab(llm.model)
                got = {}
                chunk = [t.replace(SP, " ") for t in toks[259:]] + texts[:60]
                f = os.path.join(td, "bytes.bin")
                with open(f, "wb") as fh:
                    fh.write(bytes(range(256)))
                for extra_args in ([], ["--file", f]):
                    args = extra_args if extra_args else chunk
                    r = ref.run(tool + ["--model", path, "--decode", "--special"] + args)
                    r_ids = ref.run(tool + ["--model", path, "--special"] + args)
                    for pl, il in zip(r.stdout.decode().split("\n"), r_ids.stdout.decode().split("\n")):
                        for p, i in zip(parse_pieces(pl), [int(x) for x in il.split()]):
                            got[i] = p
                n_p = n_pok = 0
                for i, p in got.items():
                    n_p += 1
                    want = llama_piece(llama_cpp, vocab, i)
                    if want == p:
                        n_pok += 1
                    elif n_p - n_pok <= 5:
                        print("  piece of %d differs: llama.cpp %r kvr %r" % (i, want, p))
                print("  pieces: %d/%d ids decode as llama_token_to_piece" % (n_pok, n_p))
                ok &= n_p > 200 and n_pok == n_p
            llm.close()
        # the same kind of vocabulary as an HF tokenizer.json (BPE with byte_fallback, the
        # normalizer transformers writes for Llama 2): scores there are minus the merge rank, so
        # the GGUF llama.cpp reads gets untied scores -index for the comparison
        toks, types, scores, merges = learn_spm_vocab(tie=1)
        path = os.path.join(td, "spm-untied.gguf")

        def extra_u(w):
            w.add_token_scores(scores)
            w.add_bos_token_id(1)
            w.add_eos_token_id(2)
            w.add_unk_token_id(0)
            w.add_add_bos_token(True)

        write_gguf(path, "llama", toks, types, extra_u)
        tj = {"version": "1.0", "truncation": None, "padding": None,
              "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                                "normalized": False, "special": True}
                               for i, (t, ty) in enumerate(zip(toks, types)) if ty in (2, 3)],
              "normalizer": {"type": "Sequence", "normalizers": [
                  {"type": "Prepend", "prepend": SP},
                  {"type": "Replace", "pattern": {"String": " "}, "content": SP}]},
              "pre_tokenizer": None,
              "post_processor": {"type": "TemplateProcessing",
                                 "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                            {"Sequence": {"id": "A", "type_id": 0}}],
                                 "pair": [], "special_tokens": {}},
              "decoder": {"type": "Sequence", "decoders": [
                  {"type": "Replace", "pattern": {"String": SP}, "content": " "},
                  {"type": "ByteFallback"}, {"type": "Fuse"},
                  {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
              "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                        "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                        "byte_fallback": True, "ignore_merges": False,
                        "vocab": {t: i for i, t in enumerate(toks)}, "merges": merges}}
        d = os.path.join(td, "hf-spm")
        write_hf_dir(d, len(toks), tj)
        llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        n_ok, n_all, n_tok = compare_ids(llm, tool, d, texts, raws, label="hf ")
        print("  HF tokenizer.json (BPE, byte_fallback) vs llama.cpp on the GGUF: ids equal in %d/%d "
              "cases (%d reference tokens)" % (n_ok, n_all, n_tok))
        ok &= n_ok == n_all
        b_ok, b_all, _ = compare_ids(llm, tool, d, texts[:40], bos=True, label="hf bos ")
        print("  ... with BOS (TemplateProcessing): %d/%d" % (b_ok, b_all))
        ok &= b_ok == b_all
        llm.close()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


HF_RE_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
HF_RE_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytelevel(use_regex):
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": use_regex}


def split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


# tokenizer.ggml.pre -> the pre_tokenizer transformers writes for that family
HF_PRE = {
    "smollm": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                      bytelevel(True)]},
    "gpt2": bytelevel(True),
    "llama-bpe": {"type": "Sequence", "pretokenizers": [split(HF_RE_LLAMA3), bytelevel(False)]},
    "qwen2": {"type": "Sequence", "pretokenizers": [split(HF_RE_QWEN2), bytelevel(False)]},
}


def read_gguf_vocab(path):
    import gguf

    r = gguf.GGUFReader(path)

    def strs(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    toks, merges = strs("tokenizer.ggml.tokens"), strs("tokenizer.ggml.merges")
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    return toks, types, merges


def tokenizer_json(toks, types, merges, pre, pairs):
    """The layout of tokenizers' Tokenizer.save (the file transformers' save_pretrained writes)."""
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": ty == 3} for i, (t, ty) in enumerate(zip(toks, types))
             if ty in (3, 4)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None, "pre_tokenizer": HF_PRE[pre],
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": pre == "llama-bpe",
                  "vocab": {t: i for i, t in enumerate(toks)},
                  "merges": [m.split(" ", 1) for m in merges] if pairs else merges},
    }


def write_hf_dir(d, V, tok_json):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
    import gen_test_models as g

    c = dict(g.TINY, V=V)
    os.makedirs(d, exist_ok=True)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": c["D"],
           "num_hidden_layers": c["L"], "num_attention_heads": c["NH"], "num_key_value_heads": c["NKV"],
           "intermediate_size": c["FF"], "vocab_size": V, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
           "tie_word_embeddings": True, "max_position_embeddings": 64, "bos_token_id": 1,
           "eos_token_id": 2}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(g.safetensors_bytes(g.tiny_weights(5, True, c), ["BF16"]))
    if tok_json is not None:
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tok_json, f, ensure_ascii=False, indent=2)


def part_hf(bindir, model):
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        print("SKIP: %s" % e)
        return SKIP
    if not model or not os.path.exists(model):
        print("SKIP: %s not found (scripts/fetch-model)" % model)
        return 1 if os.environ.get("KVR_REQUIRE_MODEL") else SKIP
    tool = [os.path.join(bindir, "kvr-tokenize")]
    toks, types, merges = read_gguf_vocab(model)
    print("== HF tokenizer.json from %s: %d tokens, %d merges" % (os.path.basename(model), len(toks), len(merges)))
    rng = random.Random(99)
    texts = list(ref.PROMPTS) + random_texts(rng, 150) + [ref.long_text()]
    raws = [ref.invalid_utf8_bytes()]
    ok = True
    with tempfile.TemporaryDirectory() as td:
        for pre, pairs in (("smollm", False), ("smollm", True), ("gpt2", True), ("llama-bpe", True),
                           ("qwen2", True)):
            d = os.path.join(td, "hf-%s-%d" % (pre, pairs))
            write_hf_dir(d, len(toks), tokenizer_json(toks, types, merges, pre, pairs))
            if pre == "smollm":
                gpath = model
            else:  # the same vocabulary under another pre-tokenizer, in a GGUF
                gpath = os.path.join(td, pre + ".gguf")
                if not os.path.exists(gpath):
                    def extra(w, pre=pre):
                        w.add_tokenizer_pre(pre)
                        w.add_token_merges(merges)
                        w.add_add_bos_token(False)
                    write_gguf(gpath, "gpt2", toks, types, extra)
            n_ok = n_all = 0
            for special in (True, False):
                want = kvr_tokenize(tool, gpath, texts, special, [])
                got = kvr_tokenize(tool, d, texts, special, [])
                for t, w_ids, g_ids in zip(texts, want, got):
                    n_all += 1
                    if w_ids == g_ids:
                        n_ok += 1
                    elif n_all - n_ok <= 3:
                        print("  ids differ for %r:\n    gguf %s\n    hf   %s" % (t[:50], w_ids[:20], g_ids[:20]))
            print("  pre %-9s merges as %s: ids equal in %d/%d cases" % (pre, "pairs  " if pairs else "strings",
                                                                        n_ok, n_all))
            ok &= n_ok == n_all
        # an HF directory without tokenizer.json, and one with an unsupported pre-tokenizer
        d = os.path.join(td, "hf-none")
        write_hf_dir(d, len(toks), None)
        r = ref.run(tool + ["--model", d, "hello"])
        msg = r.stderr.decode(errors="replace")
        good = r.returncode == 1 and "tokenizer.json" in msg
        print("  no tokenizer.json: exit %d, %r: %s" % (r.returncode, msg.strip()[:160], "PASS" if good else "FAIL"))
        ok &= good
        tj = tokenizer_json(toks, types, merges, "smollm", False)
        tj["pre_tokenizer"] = {"type": "Whitespace"}
        d = os.path.join(td, "hf-ws")
        write_hf_dir(d, len(toks), tj)
        r = ref.run(tool + ["--model", d, "hello"])
        msg = r.stderr.decode(errors="replace")
        good = r.returncode == 1 and "pre_tokenizer" in msg and "Whitespace" in msg
        print("  unsupported pre_tokenizer: exit %d, %r: %s" % (r.returncode, msg.strip()[:200], "PASS" if good else "FAIL"))
        ok &= good
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


QWEN_TEXTS = [
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "<｜begin▁of▁sentence｜><｜User｜>What is 1+1?<｜Assistant｜><think>\n1+1 = 2\n</think>\n\nThe answer is 2."
    "<｜end▁of▁sentence｜>",
    "def quicksort(xs):\n    if len(xs) <= 1:\n        return xs\n    p, *rest = xs\n"
    "    return quicksort([x for x in rest if x < p]) + [p] + quicksort([x for x in rest if x >= p])\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "深度求索是一家专注于人工智能的公司。我们的目标是探索通用人工智能的本质。",
    "通义千问（Qwen）是阿里云研发的大语言模型，支持中文、English 和代码。",
    "1234567890 3.14159265358979 1,000,000 2025-01-20 0xDEADBEEF 1e-6 ½ ²³ ٣٤٥",
    "a  b   c    d\t\te\n\n\nf \n \n g\r\n\r\nh" + " " * 17 + "end",
    "I'M SURE YOU'RE RIGHT; WE'LL SEE, THEY'VE GONE, SHE'D KNOW, IT'S 'QUOTED'",
    "Ελληνικά, русский, العربية, עברית, हिन्दी, ไทย, 한국어, 日本語",
    "😀🎉👍🏽👨‍👩‍👧 <|im_start|> <|endoftext|> <|fim_prefix|> <tool_call>",
]


def part_qwen(bindir):
    path = os.environ.get("KVR_QWEN_VOCAB", "")
    if not path:
        print("SKIP: set KVR_QWEN_VOCAB to the file scripts/qwen-vocab writes")
        return SKIP
    if not os.path.exists(path):
        print("SKIP: KVR_QWEN_VOCAB=%s does not exist (scripts/qwen-vocab)" % path)
        return SKIP
    try:
        import llama_cpp
    except ImportError as e:
        print("SKIP: %s" % e)
        return SKIP
    tool = [os.path.join(bindir, "kvr-tokenize")]
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    print("== DeepSeek-R1-Distill-Qwen vocabulary (%s): %d tokens" % (path, llm.n_vocab()))
    rng = random.Random(2025)
    texts = QWEN_TEXTS + list(ref.PROMPTS) + random_texts(rng, 300, "深度求索人工智能中文") + [ref.long_text()]
    n_ok, n_all, n_tok = compare_ids(llm, tool, path, texts, [ref.invalid_utf8_bytes()])
    b_ok, b_all, _ = compare_ids(llm, tool, path, QWEN_TEXTS, bos=True, label="bos ")
    llm.close()
    print("  ids equal in %d/%d cases (%d reference tokens), with BOS %d/%d"
          % (n_ok, n_all, n_tok, b_ok, b_all))
    ok = n_ok == n_all and b_ok == b_all
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--part", required=True, choices=["spm", "hf", "qwen"])
    ap.add_argument("--model", default="")
    a = ap.parse_args()
    if a.part == "spm":
        return part_spm(a.bindir)
    if a.part == "hf":
        return part_hf(a.bindir, a.model)
    return part_qwen(a.bindir)


if __name__ == "__main__":
    sys.exit(main())
