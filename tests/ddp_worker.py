"""Run by torchrun in test_train.py: train, then save this rank's weights (encoder + loss) for comparison."""

import sys

import torch
import torch.distributed as dist

from ge2e.config import load_config
from ge2e.train import train

if __name__ == "__main__":
    cfg = load_config(sys.argv[1])
    encoder = train(cfg, progress=False)
    rank = dist.get_rank()
    torch.save({f"encoder.{k}": v for k, v in encoder.state_dict().items()}, f"{sys.argv[2]}/rank{rank}.pt")
    dist.destroy_process_group()
