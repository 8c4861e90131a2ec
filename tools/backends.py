"""A run's backends: the executor of GPU jobs (the in-process lane or Ray actors), the one model pool, the drawer.

Sits above `tools.diffusion` (what a job runs) and `tools.gpu_jobs` / `tools.ray_pool` (where it runs).
"""

from __future__ import annotations

from dataclasses import dataclass

from portraitcraft.config import PortraitcraftConfig
from portraitcraft.tools.gpu import ModelPool
from portraitcraft.tools.gpu_jobs import Drawer, Executor, LaneExecutor


@dataclass
class Backends:
    """What a run draws with: the executor of GPU jobs, the ONE model pool local backends share in this process
    (None when no local backend runs here: remote backends only, or the Ray executor whose actors hold their
    own), and the `Drawer` facade."""

    executor: Executor
    pool: ModelPool | None
    drawer: Drawer

    async def aclose(self) -> None:
        await self.drawer.aclose()


def build_backends(cfg: PortraitcraftConfig) -> Backends:
    """The executor chosen by `[run] executor` ("lane": in-process GPU lane; "ray": `[ray]` actors), the model
    pool (budget and eviction from `[gpu]`, shared by generator, refiner and editor), and the drawer.

    Example:
        >>> backends = build_backends(load_config("configs/zimage-turbo.toml"))  # doctest: +SKIP
        >>> image = await backends.drawer.generate("a portrait", 832, 1216, 7, item_id="a")  # doctest: +SKIP
        >>> await backends.aclose()  # doctest: +SKIP
    """
    pool: ModelPool | None = None
    executor: Executor
    if cfg.run.executor == "ray":
        from portraitcraft.tools.ray_pool import RayGpuPool

        executor = RayGpuPool(cfg.ray, cfg.gpu)
    else:
        lane = LaneExecutor(cfg.gpu)
        local = [c for c in (cfg.generator, cfg.editor) if c.backend != "remote"]
        if local:
            pool = lane.runner.pool_for(local[0].device)
        executor = lane
    return Backends(executor=executor, pool=pool, drawer=Drawer(executor, cfg.generator, cfg.editor))
