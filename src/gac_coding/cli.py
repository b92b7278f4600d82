"""The ``gac-coding`` command (placeholder demo until the training command lands)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from .encoder import GACEncoder


def _load_digits() -> torch.Tensor:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('the demo needs scikit-learn: pip install "gac-coding[train]"') from exc
    images = load_digits().images  # (1797, 8, 8), values 0..16
    return torch.from_numpy(images).float().div_(16.0).unsqueeze(1)


def _demo(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    x = _load_digits()[:256]
    enc = GACEncoder(in_channels=1, out_channels=32, T=args.T)
    o = enc(x)
    print(f"digits batch {tuple(x.shape)} -> GAC code {tuple(o.shape)} (time-major [T, B, C, H, W])")
    print(f"encoder spike rate {enc.last_spikes.mean().item():.3f}, "
          f"nonzero code entries {(o > 0).float().mean().item():.3f}")
    seq = x.unsqueeze(0).expand(args.T, *x.shape).contiguous()
    for label, inp in (("static fast path", x), ("per-step sequence", seq)):
        start = time.perf_counter()
        for _ in range(3):
            enc.zero_grad()
            enc(inp).sum().backward()
        print(f"{label:>18}: {(time.perf_counter() - start) / 3 * 1e3:.1f} ms per forward+backward")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gac-coding", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="encode scikit-learn's bundled digits with GAC")
    demo.add_argument("--T", type=int, default=6)
    demo.add_argument("--out", default="demo_out")
    from .energy import configure_energy_parser, run_energy_command

    configure_energy_parser(sub.add_parser("energy", help="operation counts and energy of a model"))
    args = parser.parse_args(argv)
    if args.command == "energy":
        return run_energy_command(args)
    return _demo(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
