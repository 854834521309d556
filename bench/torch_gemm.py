"""PyTorch twin of bench/gemm.ts: GFLOP/s of one product at the same shapes and transposes, through
PyTorch's dense matmul (OpenBLAS here) and, where torch has it, through oneDNN.

Routes per case (a case is bench/products.ts's ProductCase: shapes a, b and transposeA/transposeB):
  openblas  torch.matmul on transposed views (no copies). Debian's torch 1.13 is built with BLAS_INFO=generic
            and sends float32 mm/bmm to libblas.so.3, which is OpenBLAS (libopenblas0-pthread); the JSON
            names the BLAS library actually mapped into this process. That column is the OpenBLAS roof.
  onednn    oneDNN's inner-product primitives through torch's mkldnn ops, one per form, all on the operands
            as tunelab stores them (no transposed copies; only the layout tag changes, outside the timing):
              A·B   mkldnn_linear_backward_input  (backward-data: grad_output A, weight B as [out, in])
              A·Bᵀ  mkldnn_linear                 (forward: input A, weight B as [out, in])
              Aᵀ·B  mkldnn_linear_backward_weights (backward-weights: grad_output A, input B)
            Aᵀ·Bᵀ and batched products have no oneDNN route in torch 1.13 (mm/bmm are not implemented for
            mkldnn tensors, and dense bmm goes to OpenBLAS): those cells are null, with the reason in "why".
            Every oneDNN result is checked once against the OpenBLAS one. ONEDNN_VERBOSE=1 shows what runs
            (oneDNN 2.6.3, Zen 5): forward brgemm:avx512_core with the weight reordered to a blocked layout
            on every call, backward-data gemm:jit, backward-weights brgemm_bwd_w:avx512_core with the result
            reordered back; those reorders are part of torch's oneDNN path and of these figures.

Threads: OpenBLAS follows OPENBLAS_NUM_THREADS (read when it loads), oneDNN (OpenMP build) follows
torch.set_num_threads; bench/gemm.ts starts one process per thread count with both set to it. After a
multi-threaded route the process sleeps SETTLE_S: OpenBLAS's idle workers kept spinning for 50-100 ms after a
call (measured here), which would otherwise load the next route measured (here or in gemm.ts).

Usage:
  /usr/bin/python3 bench/torch_gemm.py --threads 1 --cases '[{"name":"x","a":[1024,128],"b":[128,128]}]'
      [--budget-ms 150] [--rounds 3] [--per mean|fastest]     one JSON object on stdout
  ... --serve     a line protocol for gemm.ts: a "ready" JSON line, then one JSON line per case index read
                  from stdin ({"case": i, "openblas": x, "onednn": y}); exits at end of input
Exit code 3 (and a JSON note) when torch cannot be imported.
"""
import argparse
import json
import math
import os
import re
import sys
import time

SETTLE_S = 0.15


def blas_library() -> str:
    """The BLAS shared object mapped into this process (what torch's dense matmul calls)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in os.path.basename(line.split()[-1]).lower()}
        return ", ".join(sorted(os.path.realpath(p) for p in paths)) or "unknown"
    except OSError:
        return "unknown"


def onednn_version(torch) -> str:
    """oneDNN's version as torch's build summary gives it ("v2.6.3"), or "unknown"."""
    m = re.search(r"(?:MKL-DNN|oneDNN)[^\n]*?(v[0-9][0-9.]*)", torch.__config__.show())
    return m.group(1) if m else "unknown"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", required=True, help="JSON list of {name, a, b, transposeA?, transposeB?}")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget-ms", type=float, default=150.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per", choices=["mean", "fastest"], default="mean")
    ap.add_argument("--serve", action="store_true")
    args = ap.parse_args()

    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure means "no torch here"
        print(json.dumps({"available": False, "note": f"torch not importable: {e}", "python": sys.executable}), flush=True)
        return 3

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = json.loads(args.cases)
    mkldnn = bool(torch.backends.mkldnn.is_available())

    def flops(c: dict) -> float:
        a, b = c["a"], c["b"]
        m = a[-1] if c.get("transposeA") else a[-2]
        k = a[-2] if c.get("transposeA") else a[-1]
        n = b[-2] if c.get("transposeB") else b[-1]
        batch = max(math.prod(a[:-2]), math.prod(b[:-2]))
        return 2.0 * batch * m * k * n

    def onednn_form(c: dict):
        """(callable factory, None) for a case oneDNN can compute, else (None, why)."""
        if not mkldnn:
            return None, "this torch has no oneDNN (torch.backends.mkldnn.is_available() is False)"
        if len(c["a"]) != 2 or len(c["b"]) != 2:
            return None, "batched: torch 1.13 has no float32 batched product on oneDNN (bmm is not implemented for mkldnn tensors; dense bmm goes to OpenBLAS)"
        ta, tb = bool(c.get("transposeA")), bool(c.get("transposeB"))
        if ta and tb:
            return None, "Aᵀ·Bᵀ: none of oneDNN's inner-product forms in torch computes it without a transposed copy"
        m = c["a"][1] if ta else c["a"][0]
        n = c["b"][0] if tb else c["b"][1]

        def make(a, b):
            if tb:  # A·Bᵀ = linear(A, weight B [out=n, in=k])
                am, bm = a.to_mkldnn(), b.to_mkldnn()
                return lambda: torch._C._nn.mkldnn_linear(am, bm, None)
            if ta:  # Aᵀ·B = grad_weight of a linear with grad_output A [rows, out=m], input B [rows, in=n]
                am, bm, w = a.to_mkldnn(), b.to_mkldnn(), torch.empty(m, n)
                return lambda: torch.ops.aten.mkldnn_linear_backward_weights(am, bm, w, False)[0]
            # A·B = grad_input of a linear with grad_output A [m, out=k], weight B [out=k, in=n]
            am = a.to_mkldnn()
            return lambda: torch.ops.aten.mkldnn_linear_backward_input([m, n], am, b)

        return make, None

    def operands(c: dict):
        return torch.randn(*c["a"]), torch.randn(*c["b"])

    def dense(a, b, c: dict):
        at = a.transpose(-1, -2) if c.get("transposeA") else a
        bt = b.transpose(-1, -2) if c.get("transposeB") else b
        return lambda: torch.matmul(at, bt)

    def time_call(run, budget_s: float) -> float:
        """Seconds per call: one warm-up, then calls until the budget is spent (at least 2)."""
        run()
        calls, fastest = 0, math.inf
        start = time.perf_counter()
        elapsed = 0.0
        while calls < 2 or elapsed < budget_s:
            t = time.perf_counter()
            run()
            calls += 1
            now = time.perf_counter()
            fastest = min(fastest, now - t)
            elapsed = now - start
        return fastest if args.per == "fastest" else elapsed / calls

    checked = set()

    def measure(i: int) -> dict:
        c = cases[i]
        a, b = operands(c)
        out = {"case": i, "openblas": None, "onednn": None}
        make, _why = onednn_form(c)
        # oneDNN first: its OpenMP workers stop spinning within milliseconds, OpenBLAS's take 50-100 ms.
        if make is not None:
            run = make(a, b)
            if i not in checked:
                got, want = run(), dense(a, b, c)()
                got = got.to_dense() if got.is_mkldnn else got
                err = (got - want).abs().max().item() / max(1e-30, want.abs().max().item())
                if not err < 1e-4:
                    raise RuntimeError(f"{c['name']}: oneDNN result differs from OpenBLAS's by {err:.2e} (relative)")
                checked.add(i)
            out["onednn"] = flops(c) / time_call(run, args.budget_ms / 1000) / 1e9
            if args.threads > 1:
                time.sleep(SETTLE_S)
        out["openblas"] = flops(c) / time_call(dense(a, b, c), args.budget_ms / 1000) / 1e9
        if args.threads > 1:
            time.sleep(SETTLE_S)
        return out

    header = {
        "available": True,
        "torch": torch.__version__,
        "threads": args.threads,
        "atenThreads": torch.get_num_threads(),
        "blasThreads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "blas": blas_library(),
        "mkldnn": mkldnn,
        "onednn": onednn_version(torch) if mkldnn else None,
        "unit": f"GFLOP/s ({args.per} call)",
        "why": {c["name"]: onednn_form(c)[1] for c in cases if onednn_form(c)[1]},
    }
    if args.serve:
        print(json.dumps({**header, "ready": True}), flush=True)
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(measure(int(json.loads(line)["case"]))), flush=True)
        return 0

    best = [{"openblas": 0.0, "onednn": None} for _ in cases]
    for _ in range(args.rounds):
        for i in range(len(cases)):
            r = measure(i)
            best[i]["openblas"] = max(best[i]["openblas"], r["openblas"])
            if r["onednn"] is not None:
                best[i]["onednn"] = max(best[i]["onednn"] or 0.0, r["onednn"])
    print(json.dumps({**header, "rounds": args.rounds, "cases": [
        {"name": c["name"], "openblas": round(b["openblas"], 1), "onednn": None if b["onednn"] is None else round(b["onednn"], 1)}
        for c, b in zip(cases, best)
    ]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
