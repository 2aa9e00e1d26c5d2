"""CPU cost of the limit check alone: resolve the policy and reserve + release a slot.

Uses the real spawner code with a scripted user (no engine), so the figure is what
enforcement adds to each spawn before any Docker call.

    .venv/bin/python bench/limit_check.py [--n 20000] [--held 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jupyterhub.objects import Hub  # noqa: E402

from latticehub.slots import RUNNING, Slot  # noqa: E402
from spawner import GroupLimitDockerSpawner  # noqa: E402
from tests.fakes import Group, hub_user  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="checks to time")
    parser.add_argument("--held", type=int, default=200, help="slots already held")
    args = parser.parse_args()

    user = hub_user("ann", [Group("lqcd", {"latticehub": {"mem_limit": "6G"}})])
    spawner = GroupLimitDockerSpawner(
        user=user,
        hub=Hub(),
        image="img",
        mem_limit="4G",
        group_limits={
            "lqcd": {"max_servers": args.held + 10, "mem_limit": "8G", "cpu_limit": 2, "gpus": 1},
            "nuclear": {"max_servers": 3},
        },
        gpu_devices={"local": [str(i) for i in range(8)]},
    )
    ledger = spawner.ledger
    ledger.loaded = True
    for i in range(args.held):
        ledger._slots[(f"u{i}", "")] = Slot(pool="lqcd", user=f"u{i}", server="", state=RUNNING)
    options = {"mem_limit": "2G", "gpus": "1"}
    start = time.perf_counter()
    for _ in range(args.n):
        pool, limits, request = spawner.resolve(options)
        slot = ledger.reserve(
            pool=pool,
            user="ann",
            server="",
            limits=limits,
            request=request,
            gpu_inventory=spawner.gpu_devices,
            nodes=["local"],
        )
        ledger.release(slot.user, slot.server, slot.token)
    per_check = (time.perf_counter() - start) / args.n
    print(
        f"limit check (resolve + reserve + release) with {args.held} slots held: "
        f"{per_check * 1e6:.1f} us per spawn"
    )


if __name__ == "__main__":
    main()
