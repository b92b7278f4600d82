"""Compile every specialization of the triton neuron kernels for a CUDA target, without a GPU.

The test suite runs the kernels in triton's interpreter, which does not go through triton's
compiler; this script does (Python front end, TTIR, TTGIR, LLVM IR, PTX and, with the ptxas that
ships with triton, a cubin), for each kernel, input dtype (float16, bfloat16, float32, float64),
static/sequence input, surrogate and reset mode::

    python benchmarks/triton_compile.py [--arch 90] [--quick]

Exit status 0 when every variant compiles. ``--quick``: one variant per kernel and dtype.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
os.environ.pop("TRITON_INTERPRET", None)  # the compiler, not the interpreter

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from gac_coding.ops import _triton_kernels as K  # noqa: E402

DTYPES = {"fp16": tl.float32, "bf16": tl.float32, "fp32": tl.float32, "fp64": tl.float64}


def variants(quick: bool):
    """``(kernel, signature, constexprs)`` for every specialization the backend can launch."""
    for dt, ct in DTYPES.items():
        h = "fp64" if dt == "fp64" else "fp32"
        for static, surrogate, detach, flag in itertools.product(
            (False, True), (0, 1), (False, True), (False, True)
        ):
            if quick and (static, surrogate, detach, flag) != (False, 0, False, True):
                continue
            common = {"DECAY": 0.25, "TH": 0.5, "CT": ct, "BLOCK": 1024}
            yield K.lif_forward_kernel, {"x_ptr": f"*{dt}", "s_ptr": f"*{dt}", "h_ptr": f"*{h}",
                                         "T": "i32", "N": "i32"}, \
                {**common, "STATIC": static, "SAVE": flag}  # fmt: skip
            yield K.lif_backward_kernel, {"gs_ptr": f"*{dt}", "h_ptr": f"*{h}", "gx_ptr": f"*{dt}",
                                          "T": "i32", "N": "i32", "last": "i32"}, \
                {**common, "SURROGATE": surrogate, "DETACH": detach, "STATIC": static}  # fmt: skip
            yield K.gated_forward_kernel, {"u_ptr": f"*{dt}", "ta_ptr": f"*{dt}", "sca_ptr": f"*{dt}",
                                           "out_ptr": f"*{dt}", "fired_ptr": f"*{dt}",
                                           "gate_ptr": f"*{dt}", "h_ptr": f"*{h}", "T": "i32",
                                           "B": "i32", "P": "i32", "per_b": "i32"}, \
                {**common, "U_STATIC": static, "SCA_STATIC": flag, "SAVE": flag}  # fmt: skip
            yield K.gated_backward_kernel, {"dout_ptr": f"*{dt}", "h_ptr": f"*{h}", "ta_ptr": f"*{dt}",
                                            "sca_ptr": f"*{dt}", "gu_ptr": f"*{dt}",
                                            "gsca_ptr": f"*{dt}", "part_ptr": f"*{h}", "T": "i32",
                                            "B": "i32", "P": "i32", "per_b": "i32", "last": "i32"}, \
                {**common, "SURROGATE": surrogate, "DETACH": detach, "U_STATIC": static,
                 "SCA_STATIC": flag}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 80, 90")
    parser.add_argument("--quick", action="store_true", help="one variant per kernel and dtype")
    args = parser.parse_args(argv)
    target = GPUTarget("cuda", args.arch, 32)
    failed = done = 0
    start = time.perf_counter()
    for fn, sig, const in variants(args.quick):
        signature = {**sig, **{k: "constexpr" for k in const}}
        constexprs = {(fn.arg_names.index(k),): v for k, v in const.items()}
        try:
            triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                           target=target, options={"num_warps": 4})
            done += 1
        except Exception as exc:  # noqa: BLE001 - reported, the next variant compiles
            failed += 1
            print(f"FAIL {fn.__name__} {sig} {const}: {type(exc).__name__}: {str(exc)[:2000]}")
    print(f"{done} variants compiled for sm_{args.arch}, {failed} failed "
          f"({time.perf_counter() - start:.0f} s, triton {triton.__version__})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
