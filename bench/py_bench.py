#!/usr/bin/env python3
"""Python-side speed of the kvcache module, beside a numpy copy of the same bytes.

    PYTHONPATH=build/python python3 bench/py_bench.py

One thread. 4 KiB: put, get and view operations per second; 2 MiB: put and get in GB/s
next to numpy.copyto of the same 2 MiB into a fresh array (the reference). Each figure
is the median of 7 rounds. Uses its own CORTEX_HOME and shm prefix, removed at the end.
"""

import os
import shutil
import statistics
import tempfile
import time

import numpy

import kvcache

ROUNDS = 7


def median_rate(fn, ops):
    rates = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        fn()
        rates.append(ops / (time.perf_counter() - t0))
    return statistics.median(rates)


def main():
    home = tempfile.mkdtemp(prefix="kvc_pybench_")
    os.chmod(home, 0o700)
    prefix = f"kvcpybench_{os.getpid()}_"
    m = kvcache.Manager(home=home, shm_prefix=prefix)
    try:
        n = 20000
        # Every 4 KiB entry stays resident: room for all of them, so gets never miss.
        m.create_pool("bench", "256M", max_sequences=n)
        small = os.urandom(4096)
        seqs = range(n)

        def put_small():
            for s in seqs:
                m.put("bench", s, small)

        def get_small():
            for s in seqs:
                m.get("bench", s)

        def view_small():
            for s in seqs:
                with m.view("bench", s):
                    pass

        put4 = median_rate(put_small, n)
        get4 = median_rate(get_small, n)
        view4 = median_rate(view_small, n)
        m.clear("bench")

        big = numpy.frombuffer(os.urandom(2 << 20), dtype=numpy.uint8)
        k = 50
        gb = k * big.nbytes / 1e9

        def put_big():
            for s in range(k):
                m.put("bench", s, big)

        def get_big():
            for s in range(k):
                m.get("bench", s)

        # A put writes each entry to its own place in the pool: the reference copies into
        # k distinct slices of one preallocated array (the same memory footprint).
        dst = numpy.empty(k * big.nbytes, dtype=numpy.uint8)

        def numpy_copy_into_place():
            for s in range(k):
                numpy.copyto(dst[s * big.nbytes:(s + 1) * big.nbytes], big)

        # A get returns new bytes: the reference copies into a new array each time.
        def numpy_copy_new():
            for _ in range(k):
                out = numpy.empty_like(big)
                numpy.copyto(out, big)

        put2 = median_rate(put_big, gb)
        get2 = median_rate(get_big, gb)
        ref_put = median_rate(numpy_copy_into_place, gb)
        ref_get = median_rate(numpy_copy_new, gb)
        print("| operation | kvcache | reference | ratio |")
        print("|---|---|---|---|")
        print(f"| 4 KiB put | {put4:,.0f}/s | goal 200,000/s | {put4 / 200000:.2f} |")
        print(f"| 4 KiB get | {get4:,.0f}/s | goal 300,000/s | {get4 / 300000:.2f} |")
        print(f"| 4 KiB view | {view4:,.0f}/s | goal 500,000/s | {view4 / 500000:.2f} |")
        print(f"| 2 MiB put | {put2:.2f} GB/s | numpy copy into place {ref_put:.2f} GB/s "
              f"| {put2 / ref_put:.2f} (goal 0.8) |")
        print(f"| 2 MiB get | {get2:.2f} GB/s | numpy copy to a new array {ref_get:.2f} GB/s "
              f"| {get2 / ref_get:.2f} (goal 0.8) |")
    finally:
        try:
            m.destroy_pool("bench")
        except kvcache.Error:
            pass
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
