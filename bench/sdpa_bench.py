#!/usr/bin/env python3
"""sdpa_bench.py -- PyTorch's scaled_dot_product_attention on bench_gpu's attention shapes, for
the ratio kvr / PyTorch that scripts/gpu-check prints (issue 11 item 6).

Shapes: bf16, GQA 32 query heads over 8 KV heads, head dim 128, chunk c in 512, 2048, 8192 after
a prefix P in 0, 8192, 24576 (--quick: the first two of each); the chunk's queries attend
causally aligned bottom-right (query j sees keys 0..P+j), as KV-Runahead's ranks do. FLOPs over
the causal-valid area: 4*NH*HS*(c*P + c*(c+1)/2). Prints one line per shape:
    sdpa c=C P=P us=T tflops=F how=HOW
HOW says how the mask reached SDPA (is_causal when P = 0, causal_lower_right otherwise, or an
explicit boolean mask if those are refused). Needs torch with CUDA; exit 77 without."""
import statistics
import sys


def main():
    quick = "--quick" in sys.argv[1:]
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"skipped: no torch ({e})")
        return 77
    if not torch.cuda.is_available():
        print("skipped: torch sees no CUDA device")
        return 77
    NH, NKV, HS = 32, 8, 128
    chunks = [512, 2048, 8192][: 2 if quick else 3]
    prefixes = [0, 8192, 24576][: 2 if quick else 3]
    reps = 3 if quick else 7
    dev = torch.device("cuda")
    print(f"# sdpa_bench torch {torch.__version__} cuda {torch.version.cuda} on "
          f"{torch.cuda.get_device_name(0)}", flush=True)
    for c in chunks:
        for P in prefixes:
            S = P + c
            q = torch.randn(1, NH, c, HS, dtype=torch.bfloat16, device=dev)
            k = torch.randn(1, NKV, S, HS, dtype=torch.bfloat16, device=dev)
            v = torch.randn(1, NKV, S, HS, dtype=torch.bfloat16, device=dev)
            calls = []
            if P == 0:
                calls.append(("is_causal", lambda: F.scaled_dot_product_attention(
                    q, k, v, is_causal=True, enable_gqa=True)))
            else:
                try:
                    from torch.nn.attention.bias import causal_lower_right
                    bias = causal_lower_right(c, S)
                    calls.append(("causal_lower_right", lambda: F.scaled_dot_product_attention(
                        q, k, v, attn_mask=bias, enable_gqa=True)))
                except ImportError:
                    pass
            # last resort: an explicit boolean mask and K/V expanded to every query head
            def explicit():
                ke = k.repeat_interleave(NH // NKV, dim=1)
                ve = v.repeat_interleave(NH // NKV, dim=1)
                mask = torch.ones(c, S, dtype=torch.bool, device=dev).tril(diagonal=P)
                return F.scaled_dot_product_attention(q, ke, ve, attn_mask=mask)
            calls.append(("explicit_mask", explicit))
            for how, fn in calls:
                try:
                    fn()
                    torch.cuda.synchronize()
                except Exception as e:  # a backend refused this form: try the next
                    print(f"# sdpa c={c} P={P} {how} refused: {str(e).splitlines()[0]}",
                          flush=True)
                    continue
                times = []
                for _ in range(reps):
                    a = torch.cuda.Event(enable_timing=True)
                    b = torch.cuda.Event(enable_timing=True)
                    a.record()
                    fn()
                    b.record()
                    b.synchronize()
                    times.append(a.elapsed_time(b) * 1e3)
                us = statistics.median(times)
                flops = 4.0 * NH * HS * (c * P + c * (c + 1) / 2)
                print(f"sdpa c={c} P={P} us={us:.1f} tflops={flops / (us * 1e6):.2f} how={how}",
                      flush=True)
                break
            del q, k, v
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
