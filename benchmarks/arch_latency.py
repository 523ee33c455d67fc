"""The CPU latency of the architectures several benchmark runs found, timed side by side.

``mnist1d.py`` times each searched network right after its training, so two runs' figures come
from different moments of the machine. This script takes the ``searched_samples`` of any number of
``mnist1d.py`` JSON files and times every network again in turn, in ``--rounds`` rounds over all of
them (the median of the rounds' medians, each from :func:`nasframe.latency.measure_ms` with constant
weights, one example), so that a slow spell of the machine hits all runs alike.

    python benchmarks/arch_latency.py benchmarks/mnist1d_cpu_latency_*.json --json arch_latency.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from nasframe import build_network, load_config, validate_data
from nasframe.data import load_dataset
from nasframe.environment import environment
from nasframe.latency import measure_ms, on_device_with_constants
from nasframe.space import SearchSpace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="JSON files of benchmarks/mnist1d.py")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    nets, labels = [], []
    for run in args.runs:
        result = json.loads(Path(run).read_text())
        config, _ = load_config(result["config"], result["overrides"])
        space = SearchSpace(config)
        data = load_dataset(config.data)
        for seed, sample in enumerate(result["searched_samples"]):
            with torch.device("meta"):
                net = build_network(
                    validate_data(space.freeze(sample)), data.sample_shape, data.num_classes
                )
            nets.append((on_device_with_constants(net, torch.device("cpu")), data.sample_shape))
            labels.append({"run": run, "index": seed, "arch": space.describe(sample)})
    rounds = [
        [measure_ms(net, (torch.full((1, *shape), 0.5),)) for net, shape in nets]
        for _ in range(args.rounds)
    ]
    for label, times in zip(labels, zip(*rounds, strict=True), strict=True):
        label["latency_ms"] = statistics.median(times)
    by_run = {
        run: statistics.mean(x["latency_ms"] for x in labels if x["run"] == run)
        for run in args.runs
    }
    result = {
        "rounds": args.rounds,
        "threads": args.threads,
        "mean_latency_ms": by_run,
        "networks": labels,
        "environment": environment(torch.device("cpu")),
    }
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(by_run, indent=2))


if __name__ == "__main__":
    main()
