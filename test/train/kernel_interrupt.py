"""Interrupts a training cell in the tunelab kernel (test/train/kernel-interrupt.test.ts); prints one JSON object.

    /usr/bin/python3 kernel_interrupt.py <repo root>

The kernelspec "tunelab" is found through JUPYTER_PATH (test/kernel/jupyter.ts tempKernel()).
"""
import json
import sys
import time

from jupyter_client.manager import start_new_kernel

ROOT = sys.argv[1]
km, kc = start_new_kernel(kernel_name="tunelab", startup_timeout=120)


def run(code, interrupt_after=None):
    """Output text of a cell; sends one interrupt (SIGINT, as the notebook's button) once `interrupt_after` is printed."""
    msg_id = kc.execute(code)
    out, sent, deadline = [], False, time.time() + 200
    while time.time() < deadline:
        m = kc.get_iopub_msg(timeout=200)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        kind, c = m["msg_type"], m["content"]
        if kind == "stream":
            out.append(c["text"])
        elif kind == "error":
            out.append("ERROR %s: %s\n" % (c["ename"], c["evalue"]))
        if interrupt_after and not sent and interrupt_after in "".join(out):
            km.interrupt_kernel()
            sent = True
        if kind == "status" and c["execution_state"] == "idle":
            break
    return "".join(out)


# The source tree (require, untyped) rather than 'tunelab', which maps to the built dist/.
setup = """
const tl: any = require(%s);
await tl.initEngine();
const ids = Array.from({ length: 4000 }, (_, i) => (i * 3) %% 13);
const model = new tl.CausalLM(tl.modelConfig({ vocabSize: 64, contextLength: 16, dModel: 32, nLayers: 2, nHeads: 4 }), { seed: 1 });
const t = new tl.Trainer(model, tl.causalLmObjective, new tl.TokenWindows(ids, 16, 8), { lr: 1e-3, maxSteps: 100000 });
t.on('step', (m: any) => { if (m.step === 10) console.log('step 10 done'); });
""" % json.dumps(ROOT + "/src/index.ts")
result = {"setup": run(setup)}
result["train"] = run("const r = await t.train(); console.log(JSON.stringify({ steps: r.steps, interrupted: r.interrupted }));", "step 10 done")
result["after"] = run("console.log(JSON.stringify({ step: t.step, params: model.paramCount() }))")
kc.stop_channels()
km.shutdown_kernel(now=True)
print(json.dumps(result))
