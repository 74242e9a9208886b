#!/usr/bin/env python3
"""Where a Cortex-M firmware's instructions go: matrix kernels vs the rest.

Runs the firmware under `qemu-system-arm -singlestep -d exec,nochain` (one trace line
per executed instruction) with N steps and with 0 steps, maps each executed address to
its instruction (`arm-none-eabi-objdump`), groups addresses into straight-line runs that
executed equally often, and counts as "matrix" the runs that contain a multiply-
accumulate of the matrix kernels (SMLAD on the DSP targets, VMLADAVA, which objdump
prints as vmlava, on Helium). Prints
instructions per step in total, in the matrix kernels and outside them.

    profile.py --machine mps2-an386 --elf fw.elf --steps 3

The firmware is examples/cortex-m/bench.c (the step count comes from the semihosting
command line), as `irnn bench --target cortex-m4` builds it.
"""
import argparse
import collections
import re
import subprocess
import tempfile

MAC = re.compile(r"^(smlad|vmladav|vmlava)")


def trace_counts(machine, elf, steps):
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        subprocess.run(
            ["qemu-system-arm", "-M", machine, "-nographic",
             "-semihosting-config", "enable=on,target=native",
             "-singlestep", "-d", "exec,nochain", "-D", log.name,
             "-kernel", elf, "-append", str(steps)],
            check=True, capture_output=True, timeout=600)
        counts = collections.Counter()
        pat = re.compile(r"\[[0-9a-f]+/([0-9a-f]+)/")
        with open(log.name) as f:
            for line in f:
                m = pat.search(line)
                if m:
                    counts[int(m.group(1), 16)] += 1
        return counts


def disassemble(elf):
    arch = subprocess.run(["arm-none-eabi-readelf", "-A", elf], capture_output=True,
                          text=True).stdout
    extra = ["-m", "armv8.1-m.main"] if "v8.1-M" in arch else []
    out = subprocess.run(["arm-none-eabi-objdump", "-d", *extra, elf],
                         capture_output=True, text=True, check=True).stdout
    ins = {}
    for line in out.splitlines():
        m = re.match(r"\s+([0-9a-f]+):\s+(?:[0-9a-f]{4}\s?){1,2}\s+(\S+)", line)
        if m:
            ins[int(m.group(1), 16)] = m.group(2)
    return ins


def matrix_and_total(counts, ins):
    runs = []
    for pc in sorted(counts):
        n = counts[pc]
        if runs and pc - runs[-1][1] <= 4 and runs[-1][2] == n:
            runs[-1][1] = pc
            runs[-1][3].append(pc)
        else:
            runs.append([pc, pc, n, [pc]])
    matrix = 0
    for _, _, n, pcs in runs:
        if any(MAC.match(ins.get(p, "")) for p in pcs):
            matrix += n * len(pcs)
    return matrix, sum(counts.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machine", required=True)
    ap.add_argument("--elf", required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=0,
                    help="hidden units per step (all layers), for the per-unit figure")
    a = ap.parse_args()
    ins = disassemble(a.elf)
    m1, t1 = matrix_and_total(trace_counts(a.machine, a.elf, a.steps), ins)
    m0, t0 = matrix_and_total(trace_counts(a.machine, a.elf, 0), ins)
    total = (t1 - t0) / a.steps
    matrix = (m1 - m0) / a.steps
    print(f"instructions per step: {total:.0f}; matrix kernels {matrix:.0f}; "
          f"outside {total - matrix:.0f}", end="")
    if a.hidden:
        print(f" ({(total - matrix) / a.hidden:.0f} per hidden unit)", end="")
    print()


if __name__ == "__main__":
    main()
