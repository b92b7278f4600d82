"""One torchrun process of ``test_cuda.py::test_ddp_over_nccl_keeps_ranks_in_step``: NCCL (gloo on
the CPU) and DistributedDataParallel on ``msresnet_tiny``; rank 0 prints ``DDP_RESULT {json}``.

Usage: ``python -m torch.distributed.run --standalone --nproc_per_node N tests/cuda_ddp_worker.py cuda|cpu``
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gac_coding.models import create_model


def main(device_type: str) -> int:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ["LOCAL_RANK"])
    if device_type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=90))
    problems: list[str] = []
    torch.manual_seed(0)
    model = create_model("msresnet_tiny", num_classes=10, T=4).to(dev)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[local] if dev.type == "cuda" else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own batch
    x = (torch.rand((16, 3, 16, 16), generator=g) * 2).to(dev)
    y = torch.randint(0, 10, (16,), generator=g).to(dev)
    amp_dtype = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else None
    losses = []
    for _ in range(3):
        with torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
            logits = ddp(x)
        loss = F.cross_entropy(logits.float().mean(0), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(round(float(loss), 4))
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    mine = torch.stack([flat.sum(), flat.norm()])
    every = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(every, mine)
    if not all(torch.equal(every[0], e) for e in every):
        problems.append("parameters differ between ranks after DDP steps")
    total = torch.tensor([float(rank + 1)], device=dev)
    dist.all_reduce(total)
    if float(total) != world * (world + 1) / 2:
        problems.append(f"all_reduce gave {float(total)}")
    box: list[object] = [{"from": rank}]
    dist.broadcast_object_list(box, src=0, device=dev if dev.type == "cuda" else None)
    if box[0] != {"from": 0}:
        problems.append(f"broadcast_object_list gave {box[0]}")
    if dev.type == "cuda":
        dist.barrier(device_ids=[local])
    else:
        dist.barrier()
    if not all(math.isfinite(v) for v in losses):
        problems.append(f"non-finite losses {losses}")
    if rank == 0:
        result = {"backend": backend, "world_size": world, "device": str(dev), "amp": str(amp_dtype),
                  "losses": losses, "problems": problems}  # fmt: skip
        print("DDP_RESULT " + json.dumps(result), flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
