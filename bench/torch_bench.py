"""PyTorch twin of tunelab's train-step benchmark (bench/bench.ts runs it; it can also run alone).

Builds the same decoder-only models as src/model (GPT-2: LayerNorm, learned positions, GELU-tanh MLP,
biases, tied head; Llama: RMSNorm, RoPE in the rotate-half layout, SwiGLU, no biases, tied head), with
separate q/k/v projections as tunelab has, and times the step tunelab's Trainer takes: forward,
mean next-token cross-entropy, backward, global-norm clipping to 1.0, AdamW (betas 0.9/0.999,
eps 1e-8, no weight decay). float32, CPU, synthetic token ids.

Threads: Debian's torch does its matmuls in OpenBLAS, which follows OPENBLAS_NUM_THREADS (read when it
loads; torch.set_num_threads does not change it), and its other ops in ATen's OpenMP pool (OMP_NUM_THREADS,
`--threads` here). bench.ts starts one process per setting: 1/1, then every core for OpenBLAS with ATen at 1
(with both pools at 2 on 2 cores the reference step measured 2.3-3x slower than with 1 thread, most likely
OpenBLAS's pthreads and ATen's OpenMP threads spinning on the same cores).

Usage:
  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 /usr/bin/python3 bench/torch_bench.py --threads 1 \
      --configs '[{"name":"gpt2-ref","family":"gpt2","vocabSize":512,"contextLength":64,"dModel":128,
                   "nLayers":4,"nHeads":4,"dFf":512}]' --batch 16 --seq 64
Prints one JSON object on stdout. Exit code 3 (and a JSON note) when torch cannot be imported.
"""
import argparse
import json
import math
import os
import resource
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", required=True, help="JSON list of model configs (tunelab field names)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="ATen intra-op threads (torch.set_num_threads)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-steps", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=4.0, help="time at least this long per config")
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()

    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001 - any import failure means "no torch here"
        print(json.dumps({"available": False, "note": f"torch not importable: {e}", "python": sys.executable}))
        return 3

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    class RMSNorm(nn.Module):
        def __init__(self, d: int, eps: float):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))
            self.eps = eps

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    def rope_tables(t: int, hd: int, theta: float):
        half = hd // 2
        inv = 1.0 / (theta ** (torch.arange(0, half, dtype=torch.float32) * 2 / hd))
        ang = torch.arange(t, dtype=torch.float32)[:, None] * inv[None, :]
        ang = torch.cat([ang, ang], dim=-1)  # frequency i on dims i and i + hd/2
        return ang.cos(), ang.sin()

    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat([-x[..., half:], x[..., :half]], dim=-1)

    class Block(nn.Module):
        def __init__(self, c: dict):
            super().__init__()
            d, h, kv, ff = c["dModel"], c["nHeads"], c["nKvHeads"], c["dFf"]
            self.gpt2 = c["family"] == "gpt2"
            self.h, self.kv, self.hd = h, kv, d // h
            bias = self.gpt2
            norm = (lambda: nn.LayerNorm(d, eps=c["normEps"])) if self.gpt2 else (lambda: RMSNorm(d, c["normEps"]))
            self.attn_norm, self.mlp_norm = norm(), norm()
            self.q = nn.Linear(d, h * self.hd, bias=bias)
            self.k = nn.Linear(d, kv * self.hd, bias=bias)
            self.v = nn.Linear(d, kv * self.hd, bias=bias)
            self.o = nn.Linear(h * self.hd, d, bias=bias)
            if not self.gpt2:
                self.gate = nn.Linear(d, ff, bias=False)
            self.up = nn.Linear(d, ff, bias=bias)
            self.down = nn.Linear(ff, d, bias=bias)
            std = c["initStd"]
            for lin in [self.q, self.k, self.v, self.up] + ([] if self.gpt2 else [self.gate]):
                nn.init.normal_(lin.weight, 0, std)
            for lin in [self.o, self.down]:
                nn.init.normal_(lin.weight, 0, std / math.sqrt(2 * c["nLayers"]))
            for lin in [self.q, self.k, self.v, self.o, self.up, self.down]:
                if lin.bias is not None:
                    nn.init.zeros_(lin.bias)

        def forward(self, x, mask, rope):
            b, t, _ = x.shape
            hx = self.attn_norm(x)
            q = self.q(hx).view(b, t, self.h, self.hd).transpose(1, 2)
            k = self.k(hx).view(b, t, self.kv, self.hd).transpose(1, 2)
            v = self.v(hx).view(b, t, self.kv, self.hd).transpose(1, 2)
            if rope is not None:
                cos, sin = rope
                q = q * cos + rotate_half(q) * sin
                k = k * cos + rotate_half(k) * sin
            if self.kv != self.h:
                k = k.repeat_interleave(self.h // self.kv, dim=1)
                v = v.repeat_interleave(self.h // self.kv, dim=1)
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd)) + mask
            att = torch.softmax(scores, dim=-1) @ v
            x = x + self.o(att.transpose(1, 2).reshape(b, t, self.h * self.hd))
            m = self.mlp_norm(x)
            inner = F.gelu(self.up(m), approximate="tanh") if self.gpt2 else F.silu(self.gate(m)) * self.up(m)
            return x + self.down(inner)

    class CausalLM(nn.Module):
        def __init__(self, c: dict):
            super().__init__()
            self.c = c
            d = c["dModel"]
            self.gpt2 = c["family"] == "gpt2"
            self.embed = nn.Embedding(c["vocabSize"], d)
            nn.init.normal_(self.embed.weight, 0, c["initStd"])
            if self.gpt2:
                self.pos = nn.Embedding(c["contextLength"], d)
                nn.init.normal_(self.pos.weight, 0, c["initStd"] / 2)
            self.layers = nn.ModuleList([Block(c) for _ in range(c["nLayers"])])
            self.norm = nn.LayerNorm(d, eps=c["normEps"]) if self.gpt2 else RMSNorm(d, c["normEps"])
            t = c["contextLength"]
            self.register_buffer("mask", torch.triu(torch.full((t, t), -1e9), diagonal=1), persistent=False)
            if not self.gpt2:
                cos, sin = rope_tables(t, d // c["nHeads"], c["ropeTheta"])
                self.register_buffer("cos", cos, persistent=False)
                self.register_buffer("sin", sin, persistent=False)

        def forward(self, ids):
            t = ids.shape[1]
            x = self.embed(ids)
            rope = None
            if self.gpt2:
                x = x + self.pos.weight[:t]
            else:
                rope = (self.cos[:t], self.sin[:t])
            mask = self.mask[:t, :t]
            for layer in self.layers:
                x = layer(x, mask, rope)
            return self.norm(x) @ self.embed.weight.t()  # tied head

    def full(c: dict) -> dict:
        # Per-config "warmup", "minSteps", "budgetS" override the command-line defaults.
        out = {"nKvHeads": c["nHeads"], "normEps": 1e-5, "ropeTheta": 10000.0, "initStd": 0.02}
        out.update(c)
        return out

    results = []
    for raw in json.loads(args.configs):
        c = full(raw)
        torch.manual_seed(0)
        model = CausalLM(c)
        params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        g = torch.Generator().manual_seed(1)
        steps_data = 8  # a few distinct batches, cycled
        data = torch.randint(0, c["vocabSize"], (steps_data, args.batch, args.seq + 1), generator=g)

        def step(i: int) -> float:
            batch = data[i % steps_data]
            inputs, targets = batch[:, :-1], batch[:, 1:]
            opt.zero_grad(set_to_none=True)
            logits = model(inputs)
            loss = F.cross_entropy(logits.reshape(-1, c["vocabSize"]), targets.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss.item()

        warmup = int(raw.get("warmup", args.warmup))
        min_steps = int(raw.get("minSteps", args.min_steps))
        budget_s = float(raw.get("budgetS", args.budget_s))
        first_loss = None
        for i in range(warmup):
            loss = step(i)
            first_loss = loss if first_loss is None else first_loss
        n = 0
        start = time.perf_counter()
        elapsed = 0.0
        step_s = []
        while n < min_steps or elapsed < budget_s:
            t0 = time.perf_counter()
            loss = step(warmup + n)
            step_s.append(time.perf_counter() - t0)
            n += 1
            elapsed = time.perf_counter() - start
        tokens = n * args.batch * args.seq
        median_s = sorted(step_s)[len(step_s) // 2]
        results.append({
            "name": raw.get("name", c["family"]),
            "family": c["family"],
            "params": params,
            "warmupSteps": warmup,
            "timedSteps": n,
            "stepMs": round(1000 * elapsed / n, 2),
            "tokensPerSec": round(tokens / elapsed, 1),
            "medianStepMs": round(1000 * median_s, 2),
            "medianTokensPerSec": round(args.batch * args.seq / median_s, 1),
            "firstLoss": round(first_loss, 4) if first_loss is not None else None,
            "lastLoss": round(loss, 4),
        })
        del model, opt

    print(json.dumps({
        "available": True,
        "torch": torch.__version__,
        "atenThreads": torch.get_num_threads(),
        "blasThreads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "peakRssMiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "results": results,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
