"""Which part of a study this process runs: PyTorch's own launchers, or a shard given by hand.

Under ``torchrun`` (and ``accelerate launch``, which starts the same way) every process reads
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``, takes ``cuda:LOCAL_RANK`` (or the CPU, with the gloo
backend) and scores a strided shard of the examples; ``--shard i/N`` does the same without a
launcher (job arrays of a cluster scheduler). Nothing here schedules work: the launcher does.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from attnlens._checks import ArgumentError
from attnlens.experiments.shards import ShardSpec


@dataclass(frozen=True)
class Launch:
    """How this process was started.

    Attributes:
        rank: this process's shard (0-based).
        world: the number of shards.
        local_rank: the process's index on its node (its GPU), 0 without a launcher.
        launched: started by ``torchrun``/``accelerate launch`` (ranks meet in a process group).
        manual: a shard given by ``--shard i/N`` (no group; merged later by ``attnlens merge``).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    launched: bool = False
    manual: bool = False

    @property
    def spec(self) -> ShardSpec:
        return ShardSpec(self.rank, self.world)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that merges, summarises and writes."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world > 1 or self.manual


def launch_from_environment(shard: str | None = None, environ: Mapping[str, str] | None = None) -> Launch:
    """The launch of this process, from the launcher's variables or `shard` (``"i/N"``).

    Raises:
        ArgumentError: naming `shard` when it is malformed or given under a launcher.
    """
    environ = os.environ if environ is None else environ
    if "RANK" in environ and "WORLD_SIZE" in environ:
        if shard is not None:
            raise ArgumentError("Expected `shard` to be unset under torchrun or accelerate launch (they choose the "
                                f"shard), but got {shard!r}.", "shard")
        rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
        return Launch(rank=rank, world=world, local_rank=int(environ.get("LOCAL_RANK", 0)), launched=world > 1)
    if shard is not None:
        spec = ShardSpec.parse(shard)
        return Launch(rank=spec.index, world=spec.count, manual=True)
    return Launch()


def rank_device(device: str, launch: Launch) -> str:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under a launcher; anything else is kept."""
    return f"cuda:{launch.local_rank}" if device == "cuda" and launch.launched else device


@contextlib.contextmanager
def process_group(launch: Launch, device: str) -> Iterator[None]:
    """Join the launcher's process group (nccl on CUDA, gloo on the CPU) for the barrier; leave it on exit."""
    if not launch.launched:
        yield
        return
    import torch.distributed as dist  # noqa: PLC0415

    joined = False
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            import torch  # noqa: PLC0415

            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=12))
        joined = True
    try:
        yield
    finally:
        if joined:
            dist.destroy_process_group()


def barrier(launch: Launch) -> None:
    """Wait for every rank (a no-op without a launcher)."""
    if launch.launched:
        import torch.distributed as dist  # noqa: PLC0415

        if dist.is_initialized():
            dist.barrier()


__all__ = ["Launch", "barrier", "launch_from_environment", "process_group", "rank_device"]
