"""jupyter_kernel_test conformance suite for the "TypeScript (tunelab)" kernel.

Run by test/kernel/conformance.test.ts with JUPYTER_PATH pointing at a temporary kernelspec install:
    /usr/bin/python3 -m unittest -v kernel_conformance      (from test/kernel/)
TUNELAB_KERNEL_NAME picks the kernelspec (default "tunelab"); TUNELAB_KERNEL_MODULE is the kernel module the
spec runs (src/kernel/kernel.ts or dist/kernel/kernel.js), whose clearOutput() the clear_output sample calls.
"""
import json
import os
import unittest

import jupyter_kernel_test

KERNEL_MODULE = os.environ.get("TUNELAB_KERNEL_MODULE", "")


class TunelabKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = os.environ.get("TUNELAB_KERNEL_NAME", "tunelab")
    language_name = "typescript"
    file_extension = ".ts"

    code_hello_world = 'console.log("hello, world")'
    code_stderr = 'console.error("some error")'

    completion_samples = [
        {"text": "Math.fl", "matches": {"floor"}},
        {"text": "const sampleValue = 1; sampleV", "matches": {"sampleValue"}},
    ]
    complete_code_samples = ["1", 'console.log("hello, world")', "function f(x: number) {\n  return x;\n}"]
    incomplete_code_samples = ["function f(x: number) {", "const a = [1, 2,", "if (true) {\n  console.log(1);"]

    code_display_data = [
        {"code": 'import * as tslab from "tslab";\ntslab.display.html("<b>bold</b>")', "mime": "text/html"},
        {"code": 'import * as tslab from "tslab";\ntslab.display.markdown("# title")', "mime": "text/markdown"},
    ]

    code_execute_result = [
        {"code": "1 + 2", "result": "3"},
        {"code": '"tune" + "lab"', "result": "tunelab"},
        {"code": "[1, 2, 3].map((x) => x * 2)", "result": "[ 2, 4, 6 ]"},
    ]
    # Matches one of code_execute_result only (search must find exactly one unique entry).
    code_history_pattern = "1 + *"
    supported_history_operations = ("tail", "range", "search")

    code_generate_error = 'throw new Error("boom")'

    code_inspect_sample = "Math.max"
    code_page_something = "Math.max?"

    code_clear_output = (
        f"require({json.dumps(KERNEL_MODULE)}).clearOutput()" if KERNEL_MODULE else ""
    )


if __name__ == "__main__":
    unittest.main()
