#!/usr/bin/env python3
"""Times the system OpenBLAS's cblas_sgemm (the library swift-lora-dist links) on the
products of a SmolLM2-135M training step over 1024 tokens, on one thread, and on the fused
shapes a q/k/v or gate/up fusion would give. Needs only numpy; run it with
OPENBLAS_CORETYPE=Haswell (or another kernel) to compare kernels. Prints one line per shape:

    OPENBLAS_CORETYPE=Haswell python3 scripts/sgemm_shapes.py
"""
import ctypes
import time

import numpy as np

LIBRARY = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

# (name, M, N, K, B transposed): C[M, N] = A[M, K] · B (B stored [N, K] when transposed).
SHAPES = [
    ("q forward X·Wqᵀ", 1024, 576, 576, True),
    ("k forward", 1024, 192, 576, True),
    ("q,k,v fused forward", 1024, 960, 576, True),
    ("gate forward", 1024, 1536, 576, True),
    ("gate,up fused forward", 1024, 3072, 576, True),
    ("down forward", 1024, 576, 1536, True),
    ("dX from dq", 1024, 576, 576, False),
    ("dX from dk", 1024, 576, 192, False),
    ("dX from dq,dk,dv fused", 1024, 576, 960, False),
    ("d activation from dstream", 1024, 1536, 576, False),
    ("dX from dgate", 1024, 576, 1536, False),
    ("dX from dgate,dup fused", 1024, 576, 3072, False),
    ("head forward, 256 rows", 256, 49152, 576, True),
    ("head forward, 1024 rows", 1024, 49152, 576, True),
    ("head backward, 256 rows", 256, 576, 49152, False),
    ("head backward, 1024 rows", 1024, 576, 49152, False),
    ("bench's peak shape", 1024, 1536, 576, True),
]


def gflops(lib, m, n, k, transposed):
    pointer = ctypes.POINTER(ctypes.c_float)
    a = np.random.rand(m, k).astype(np.float32)
    b = np.random.rand(n, k).astype(np.float32) if transposed else np.random.rand(k, n).astype(np.float32)
    c = np.zeros((m, n), np.float32)
    arguments = (
        ROW_MAJOR, NO_TRANS, TRANS if transposed else NO_TRANS, m, n, k, ctypes.c_float(1),
        a.ctypes.data_as(pointer), k, b.ctypes.data_as(pointer), k if transposed else n, ctypes.c_float(0),
        c.ctypes.data_as(pointer), n)
    lib.cblas_sgemm(*arguments)  # warm-up
    flops = 2 * m * n * k
    repetitions = max(3, int(3e9 / flops))
    start = time.perf_counter()
    for _ in range(repetitions):
        lib.cblas_sgemm(*arguments)
    seconds = (time.perf_counter() - start) / repetitions
    return flops / seconds / 1e9, seconds


def main():
    lib = ctypes.CDLL(LIBRARY)
    lib.openblas_set_num_threads(1)
    lib.openblas_get_corename.restype = ctypes.c_char_p
    print(f"OpenBLAS kernel {lib.openblas_get_corename().decode()}, 1 thread")
    for name, m, n, k, transposed in SHAPES:
        rate, seconds = gflops(lib, m, n, k, transposed)
        print(f"{name:28s} {m:5d} {n:6d} {k:6d} {rate:7.1f} GFLOP/s {seconds * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
