"""Drives the tunelab kernel through jupyter_client for test/kernel/*.test.ts; prints one JSON object.

    /usr/bin/python3 driver.py session          # flood, live display, errors, stop_on_error, results (one kernel)
    /usr/bin/python3 driver.py starts N P       # N kernel starts, P at a time: start, kernel_info, shutdown
    /usr/bin/python3 driver.py rich             # rich display, data packages, imports kept after failures (one kernel)

The kernelspec is found through JUPYTER_PATH; TUNELAB_KERNEL_NAME names it (default "tunelab").
"""
import asyncio
import json
import queue
import os
import sys
import time
from queue import Empty

from jupyter_client.manager import AsyncKernelManager, start_new_kernel

KERNEL = os.environ.get("TUNELAB_KERNEL_NAME", "tunelab")
TIMEOUT = 120


def run_cell(kc, code, **kwargs):
    """Executes code; returns (reply content, iopub messages of this request until idle)."""
    msg_id = kc.execute(code, **kwargs)
    return collect(kc, msg_id)


_iopub = {}  # iopub messages by parent msg_id, kept for requests collected later
_replies = {}


def collect(kc, msg_id):
    """The reply and iopub messages (until idle) of request msg_id."""
    deadline = time.time() + TIMEOUT
    while not any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in _iopub.get(msg_id, [])):
        msg = kc.get_iopub_msg(timeout=max(1, deadline - time.time()))
        _iopub.setdefault(msg["parent_header"].get("msg_id"), []).append(msg)
    while msg_id not in _replies:
        r = kc.get_shell_msg(timeout=max(1, deadline - time.time()))
        _replies[r["parent_header"].get("msg_id")] = r["content"]
    return _replies.pop(msg_id), [m for m in _iopub.pop(msg_id) if m["msg_type"] != "status"]


def interrupt_until_idle(kc, km, msg_id, tries=10):
    """Interrupts until request msg_id goes idle, as a user presses interrupt again if nothing happens."""
    idle = lambda: any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in _iopub.get(msg_id, []))
    for attempt in range(1, tries + 1):
        km.interrupt_kernel()
        # A loaded machine (CI beside other jobs) may take seconds to answer; only then interrupt again.
        deadline = time.time() + 10
        while time.time() < deadline and not idle():
            try:
                msg = kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            _iopub.setdefault(msg["parent_header"].get("msg_id"), []).append(msg)
        if idle():
            return collect(kc, msg_id), attempt
    return collect(kc, msg_id), tries


def wait_for_stream(kc, msg_id, text):
    """Reads iopub (keeping messages for collect) until request msg_id printed text."""
    deadline = time.time() + TIMEOUT
    while text not in stream_text(_iopub.get(msg_id, [])):
        msg = kc.get_iopub_msg(timeout=max(1, deadline - time.time()))
        _iopub.setdefault(msg["parent_header"].get("msg_id"), []).append(msg)


def stream_text(outputs, name="stdout"):
    return "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream" and m["content"]["name"] == name)


def session():
    km, kc = start_new_kernel(kernel_name=KERNEL, startup_timeout=60)
    out = {}
    try:
        # Warm the compiler, so the timings below measure the cells.
        run_cell(kc, "0")

        t = time.time()
        reply, msgs = run_cell(kc, "for (let i = 0; i < 20000; i++) console.log('line ' + i)")
        text = stream_text(msgs)
        lines = text.splitlines()
        out["flood"] = {
            "status": reply["status"], "lines": len(lines), "messages": len(msgs),
            "first": lines[0] if lines else None, "last": lines[-1] if lines else None,
            "in_order": lines == [f"line {i}" for i in range(20000)],
            "stderr": stream_text(msgs, "stderr"), "seconds": round(time.time() - t, 2),
        }

        t = time.time()
        reply, msgs = run_cell(
            kc,
            "import * as tslab from 'tslab';\n"
            "const d = tslab.newDisplay();\n"
            "for (let i = 0; i <= 2000; i++) d.text('step ' + i);",
        )
        shown = [m for m in msgs if m["msg_type"] in ("display_data", "update_display_data")]
        ids = {m["content"].get("transient", {}).get("display_id") for m in shown}
        out["display"] = {
            "status": reply["status"], "displays": sum(m["msg_type"] == "display_data" for m in shown),
            "updates": sum(m["msg_type"] == "update_display_data" for m in shown),
            "last": shown[-1]["content"]["data"].get("text/plain") if shown else None, "display_ids": len(ids),
            "errors": [m["content"] for m in msgs if m["msg_type"] == "error"],
            "stderr": stream_text(msgs, "stderr"), "seconds": round(time.time() - t, 2),
        }

        reply, msgs = run_cell(kc, "40 + 2")
        results = [m["content"] for m in msgs if m["msg_type"] == "execute_result"]
        out["result"] = {"status": reply["status"], "count": reply.get("execution_count"), "results": results,
                         "stdout": stream_text(msgs)}

        def error_of(code):
            reply, msgs = run_cell(kc, code)
            errs = [m["content"] for m in msgs if m["msg_type"] == "error"]
            return {"reply": reply, "errors": errs, "stderr": stream_text(msgs, "stderr")}

        out["runtime_error"] = error_of("console.log('before');\nthrow new TypeError('bad value')")
        reply, msgs = run_cell(kc, "console.log('after')")
        out["after_error"] = {"status": reply["status"], "stdout": stream_text(msgs)}
        out["compile_error"] = error_of("const n: number = 'text'")
        out["async_error"] = error_of("await new Promise((_, reject) => setTimeout(() => reject(new RangeError('late')), 10))")

        # stop_on_error (what "run all" sends): requests queued behind a failing cell are aborted ...
        # (The failing cell waits 1.5 s so that both later requests are surely queued when it fails.)
        ids = [kc.execute("await new Promise((r) => setTimeout(r, 1500));\nthrow new Error('first')"), kc.execute("console.log('queued 1')"),
               kc.execute("console.log('queued 2')")]
        out["stop_on_error"] = [collect(kc, i)[0]["status"] for i in ids]
        # ... and a request sent after the failure runs.
        out["after_abort"] = run_cell(kc, "console.log('fresh')")[0]["status"]
        # stop_on_error=False (nbclient --allow-errors): queued requests run.
        ids = [kc.execute("throw new Error('second')", stop_on_error=False), kc.execute("console.log('runs')")]
        out["allow_errors"] = [collect(kc, i)[0]["status"] for i in ids]

        # Interrupts (SIGINT, the kernelspec's interrupt_mode) stop a busy loop and a pending await.
        # A line printed just before blocking work arrives at once: wait for it, then interrupt half a second
        # later, as a hand would. (At the very instant a cell's synchronous part ends, Node's breakOnSigint can
        # lose a SIGINT or exit on it: kernel/README.md, item 9.)
        out["interrupt"] = []
        for code in ["console.log('started');\nwhile (true) {}", "console.log('started');\nawait new Promise(() => {})"]:
            msg_id = kc.execute(code)
            wait_for_stream(kc, msg_id, "started")
            time.sleep(0.5)
            (reply, _), attempts = interrupt_until_idle(kc, km, msg_id)
            out["interrupt"].append(reply.get("evalue"))
            out.setdefault("interrupt_attempts", []).append(attempts)
        # A second interrupt pressed after the cell stopped reaches an idle kernel: the next cells (an await, then
        # 100 ms of work under the SIGINT watchdog) run undisturbed. (Two SIGINTs microseconds apart are another
        # matter: test/kernel/sigint.test.ts covers the one Node keeps for a later run.)
        out["late_interrupt"] = []
        for _ in range(2):
            msg_id = kc.execute("console.log('started');\nwhile (true) {}")
            wait_for_stream(kc, msg_id, "started")
            time.sleep(0.5)
            interrupt_until_idle(kc, km, msg_id)
            km.interrupt_kernel()
            time.sleep(0.5)
            for code in ["await new Promise((r) => setTimeout(r, 100))", "{ const t = Date.now() + 100; while (Date.now() < t) {} }"]:
                later = run_cell(kc, code)[0]
                out["late_interrupt"].append(later.get("evalue") or later["status"])
        alive = run_cell(kc, "console.log('alive')")[0]
        out["after_interrupt"] = alive["status"]
        out["after_interrupt_error"] = alive.get("evalue")

        # tunelab resolves from a folder without node_modules/tunelab (types and runtime).
        reply, msgs = run_cell(kc, "require.resolve('tunelab/package.json')")
        out["resolve"] = {"status": reply["status"],
                          "result": [m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "execute_result"],
                          "errors": [m["content"] for m in msgs if m["msg_type"] == "error"]}
        # ... and TypeScript sees it too (a JSON module, so no build of dist/ is needed).
        reply, msgs = run_cell(kc, "import pkg from 'tunelab/package.json';\npkg.name")
        out["typed_import"] = {"status": reply["status"],
                               "result": [m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "execute_result"],
                               "errors": [m["content"]["evalue"] for m in msgs if m["msg_type"] == "error"]}

        reply = kc.history(hist_access_type="tail", n=3, output=False, raw=True, reply=True, timeout=10)
        out["history"] = reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
    return out


def rich():
    """Each cell's outputs as {msg_type, data} (plus reply status), for the cells that rich display concerns."""
    cells = {
        # arquero imports from a folder with no node_modules (the kernel maps tunelab's own copy).
        "arquero": "import * as aq from 'arquero';\naq.table({ a: [1, 2, 3] }).numRows()",
        # danfojs (the browser build, a dev dependency here) declares its entry only in "exports", which tslab's
        # TypeScript 5.0 (Node10 resolution) cannot read: at run time it loads; danfojs-node has "main"/"types".
        "danfo": "const dfd = require('danfojs');\nnew dfd.DataFrame({ a: [1, 2], b: [3, 4] }).shape",
        # The rich display protocol: a cell's last value ...
        "protocol": "const o = { [Symbol.for('tunelab.mimeBundle')]() { return { 'text/plain': 'plain o', 'text/html': '<b>rich o</b>' }; } };\no",
        # ... and display(x); a chart's output carries every form of the chart.
        "display": "import { display, lossChart } from 'tunelab';\ndisplay(o);\ndisplay(42);\nlossChart({ step: [1, 2, 3], loss: [3, 2, 1] }).show();",
        "chart_value": "lossChart({ step: [1, 2], loss: [2, 1] })",
        "bad_bundle": "({ [Symbol.for('tunelab.mimeBundle')]() { return 42; } })",
        # A cell failing after its imports keeps them (at run time and at compile time) ...
        "runtime_fail": "import { viz as v1 } from 'tunelab';\nthrow new Error('boom');",
        "after_runtime_fail": "v1.smooth([1, 2], 0.5).length",
        "compile_fail": "import { viz as v2 } from 'tunelab';\nconst bad: number = 'text';",
        "after_compile_fail": "v2.thinIndices(3).length",
    }
    km, kc = start_new_kernel(kernel_name=KERNEL, startup_timeout=60)
    out = {}
    try:
        for name, code in cells.items():
            reply, msgs = run_cell(kc, code)
            out[name] = {"status": reply["status"], "evalue": reply.get("evalue"), "stderr": stream_text(msgs, "stderr"),
                         "outputs": [{"type": m["msg_type"], "data": m["content"].get("data")} for m in msgs
                                     if m["msg_type"] in ("execute_result", "display_data")]}
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
    return out


async def one_start(i, sem, results):
    async with sem:
        t = time.time()
        km = AsyncKernelManager(kernel_name=KERNEL)
        try:
            await km.start_kernel()
            kc = km.client()
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=30)
                msg_id = kc.kernel_info()
                reply = await kc.get_shell_msg(timeout=10)
                # wait_for_ready may have sent several kernel_info requests: skip their replies.
                while reply["parent_header"]["msg_id"] != msg_id:
                    reply = await kc.get_shell_msg(timeout=10)
                ok = reply["content"]["status"] == "ok"
                results.append({"i": i, "ok": ok, "seconds": round(time.time() - t, 2)})
            finally:
                kc.stop_channels()
        except Exception as e:  # noqa: BLE001 - every failure is a result to report
            results.append({"i": i, "ok": False, "error": f"{type(e).__name__}: {e}", "seconds": round(time.time() - t, 2)})
        finally:
            try:
                await km.shutdown_kernel(now=False)
            except Exception as e:  # noqa: BLE001
                results.append({"i": i, "ok": False, "error": f"shutdown: {e}"})


async def starts(n, parallel):
    sem = asyncio.Semaphore(parallel)
    results = []
    t = time.time()
    await asyncio.gather(*(one_start(i, sem, results) for i in range(n)))
    failed = [r for r in results if not r["ok"]]
    times = sorted(r["seconds"] for r in results if r["ok"])
    return {"count": n, "ok": len(results) - len(failed), "failed": failed, "seconds": round(time.time() - t, 2),
            "median": times[len(times) // 2] if times else None, "max": times[-1] if times else None}


if __name__ == "__main__":
    if sys.argv[1] == "session":
        print(json.dumps(session()))
    elif sys.argv[1] == "rich":
        print(json.dumps(rich()))
    elif sys.argv[1] == "starts":
        print(json.dumps(asyncio.run(starts(int(sys.argv[2]), int(sys.argv[3])))))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
