{
  "targets": [
    {
      "target_name": "tunelab_native",
      "sources": ["src/addon.c", "src/gemm.c", "src/kernels_x86.c", "src/pool.c", "src/fused.c", "src/fused_x86.c", "src/fused_napi.c"],
      "cflags": ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-fno-math-errno", "-Wall", "-Wno-unused-function"],
      "cflags!": ["-O2", "-O0"],
      "libraries": ["-lpthread"],
      "defines": ["NAPI_VERSION=8"],
      "xcode_settings": { "OTHER_CFLAGS": ["-O3", "-std=gnu11"] }
    }
  ]
}
