"""Latency of architectures from a table of measured parts (``search.cost: latency``).

Each distinct part of a network (:mod:`nasframe.parts`: an op at its width and resolution, a
stem, a head) is timed once, alone, on the latency device, and an architecture's latency is the
sum of its parts' times: the lookup table of FBNet (Wu et al., CVPR 2019). Timing is noisy, so a
part is never timed twice in a run: every time measured is written at once to the run's
``latency.json``, which a resumed run reads back (the search then continues exactly as it would
have), and which another run can start from (``search.latency.table``) to search against the same
numbers, e.g. times measured on the deployment machine.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import write_json
from .config import Config, LatencyConfig
from .device import resolve_device
from .distributed import Group
from .environment import environment
from .errors import UserError
from .parts import Part
from .run_files import LATENCY_TABLE
from .values import is_finite_number

__all__ = [
    "LatencyTable",
    "fill_table",
    "measure_ms",
    "measure_times",
    "cpu_threads",
    "network_latency_ms",
    "latency_device",
    "on_device_with_constants",
    "open_latency_table",
    "LATENCY_TABLE",
]

#: How a part is timed: its milliseconds on the given inputs (tests pass a stand-in).
TimingFn = Callable[[nn.Module, tuple[torch.Tensor, ...]], float]


def measure_ms(module: nn.Module, inputs: tuple[torch.Tensor, ...], **options: Any) -> float:
    """Median milliseconds of one forward pass of ``module`` on ``inputs``: the median of
    :func:`measure_times` (``options`` are its own)."""
    return statistics.median(measure_times(module, inputs, **options))


def measure_times(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    warmup: int = 3,
    min_repeats: int = 10,
    max_repeats: int = 200,
    min_seconds: float = 0.05,
) -> list[float]:
    """Milliseconds of each timed forward pass of ``module`` on ``inputs`` (after ``warmup``
    passes; repeated until ``min_seconds`` have passed, between ``min_repeats`` and
    ``max_repeats`` times). CUDA work is waited for after each pass."""
    device = inputs[0].device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(*inputs)
        sync(device)
        spent = 0.0
        while len(times) < max_repeats and (len(times) < min_repeats or spent < min_seconds):
            start = time.perf_counter()
            module(*inputs)
            sync(device)
            took = time.perf_counter() - start
            times.append(took)
            spent += took
    return [t * 1e3 for t in times]


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Torch's CPU threads set to ``threads`` inside the block (None: left as they are)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads is not None:
            torch.set_num_threads(before)


def network_latency_ms(
    model: nn.Module, sample_shape: Sequence[int], options: LatencyConfig, run_device: torch.device
) -> dict[str, Any]:
    """The time of one forward pass of a whole trained network (a copy, in eval mode) as
    ``search.latency`` times parts: its device (default ``run_device``), batch size and threads."""
    device, threads = latency_device(options, run_device)
    net = copy.deepcopy(model).to(device).eval()
    x = torch.full((options.batch_size, *sample_shape), 0.5, device=device)
    with cpu_threads(threads):
        ms = measure_ms(net, (x,))
    return {
        "latency_ms": ms,
        "latency_device": str(device),
        "latency_batch_size": options.batch_size,
    }


def on_device_with_constants(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` (e.g. built on the meta device) on ``device`` in eval mode, every weight and
    buffer a small constant: timing draws no random numbers and meets no denormals."""
    module = module.to_empty(device=device).eval()
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            if t.is_floating_point():
                t.fill_(0.01)
    return module


class LatencyTable:
    """Milliseconds of each part's forward pass at ``batch_size`` on ``device``; a part missing
    from the table is timed on first use and saved to ``path`` at once.

    ``share`` gives every process of a distributed run the main process's time (only the main
    process times and writes), so that all rank architectures alike.
    """

    def __init__(
        self,
        device: torch.device,
        batch_size: int = 1,
        path: Path | None = None,
        entries: dict[str, float] | None = None,
        measure: TimingFn = measure_ms,
        share: Callable[[Any], Any] = lambda value: value,
        main: bool = True,
        threads: int | None = None,
    ) -> None:
        self.device, self.batch_size, self.path = device, batch_size, path
        self.entries: dict[str, float] = dict(entries or {})
        self.measure, self.share, self.main = measure, share, main
        self.threads = threads if device.type == "cpu" else None
        self.timed = 0  # parts timed by this table (not read from a file)
        self._header: dict[str, Any] | None = None

    def __call__(self, part: Part) -> float:
        key = part.key
        value = self.entries.get(key)
        if value is None:
            value = self.share(self._time(part) if self.main else None)
            self.entries[key] = value
            self.timed += 1
            self.save()
        return value

    def total(self, parts: Iterable[Part]) -> float:
        """Milliseconds of a network made of ``parts``."""
        return sum(self(p) for p in parts)

    def _time(self, part: Part) -> float:
        with torch.device("meta"):
            module = part.build()
        module = on_device_with_constants(module, self.device)
        inputs = tuple(
            torch.full((self.batch_size, *shape), 0.5, device=self.device) for shape in part.inputs
        )
        with cpu_threads(self.threads):
            return float(self.measure(module, inputs))

    def header(self) -> dict[str, Any]:
        """What the times were measured on (CPU threads: those of the timed passes)."""
        if self._header is None:
            env = environment(self.device)
            if self.threads is not None:
                env["threads"] = self.threads
            keep = ("device", "device_name", "torch", "threads", "cuda")
            self._header = {"batch_size": self.batch_size, **{k: env[k] for k in keep if k in env}}
        return self._header

    def save(self) -> None:
        """Write the table to ``path`` (atomically; only the main process writes)."""
        if self.path is not None and self.main:
            write_json({**self.header(), "entries": self.entries}, self.path)

    @staticmethod
    def read(
        path: Path, where: str | None = None, batch_size: int | None = None, fix: str = ""
    ) -> dict[str, Any]:
        """A table file's contents, checked (and timed at ``batch_size``, if given); a bad file
        is the user's error, reported at the config field ``where`` (None: at the file), with
        ``fix`` as the advice for another batch size."""
        at = f"{where}: {path}" if where else str(path)
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UserError(
                f"{at}: no latency table there; give the latency.json of an earlier run or of "
                "`nasframe latency`"
            ) from None
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else e
            raise UserError(f"{at}: not a readable latency table ({reason})") from None
        entries = data.get("entries") if isinstance(data, dict) else None
        if not isinstance(entries, dict) or not all(
            is_finite_number(v) and v >= 0 for v in entries.values()
        ):
            raise UserError(
                f"{at}: not a latency table (it needs an 'entries' mapping of parts to "
                "non-negative milliseconds, as a run's latency.json has)"
            )
        batch = data.get("batch_size", 1)
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise UserError(  # no batch size to suggest: the times were taken at an unknown one
                f"{at}: the table's header is damaged: its batch_size is {batch!r}, not a "
                "positive whole number, so it is unknown what its times were measured at; "
                "use another table or time the parts again (`nasframe latency`)"
            )
        if batch_size is not None and "batch_size" in data and batch != batch_size:
            raise UserError(
                f"{at}: timed at batch {batch}, but search.latency.batch_size is {batch_size}; "
                + (fix or f"set search.latency.batch_size: {batch}")
            )
        return data


def open_latency_table(
    options: LatencyConfig,
    run_device: torch.device,
    run_dir: Path | None,
    resume: bool,
    group: Group,
    tell: Callable[[str], None] = lambda _: None,
) -> LatencyTable:
    """The latency table of a search: the run's own ``latency.json`` when it resumes (on the
    device and batch size it was timed at: a resumed run cannot mix times), else
    ``options.table``'s times (if any), timing what is missing on ``options.device`` (default:
    ``run_device``) and saving to ``run_dir`` (None: a dry run, nothing written; a resumed run's
    table is written only when it times a new part, so a refused resume leaves it as it was)."""
    device, threads = latency_device(options, run_device)
    own = None if run_dir is None else Path(run_dir) / LATENCY_TABLE
    entries: dict[str, float] = {}
    if resume and own is not None and own.exists():
        data = LatencyTable.read(own, batch_size=options.batch_size)
        _same_device(data, device, own)
        entries = data["entries"]
    elif options.table is not None:
        data = LatencyTable.read(Path(options.table), "search.latency.table", options.batch_size)
        entries = data["entries"]
        tell(
            f"latency: {len(entries)} part times from {options.table} (timed on "
            f"{data.get('device_name', 'an unrecorded device')}); parts it lacks are timed on "
            f"{device} at batch {options.batch_size}"
        )
    elif not resume:
        tell(f"latency: each part timed once on {device} at batch {options.batch_size}")
    table = LatencyTable(
        device,
        options.batch_size,
        own,
        entries,
        share=group.broadcast,
        main=group.main,
        threads=threads,
    )
    if not resume:
        table.save()
    return table


def _same_device(data: dict[str, Any], device: torch.device, path: Path) -> None:
    """Refuse to add parts timed on ``device`` to a run's table timed on another kind of
    device."""
    timed = data.get("device")
    try:
        same = timed is None or torch.device(str(timed)).type == device.type
    except (RuntimeError, ValueError):
        same = False
    if not same:
        raise UserError(
            f"{path}: the run's parts were timed on {timed}, but search.latency.device now gives "
            f"{device}; a resumed run keeps its own table: set search.latency.device: {timed}"
        )


def fill_table(
    config: Config, out: Path, draws: int, tell: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Time the parts of ``draws`` architectures drawn uniformly from ``config``'s space (seeded
    by ``config.seed``; its first options' architecture first; every architecture once when the
    space has no more than ``draws``) into the table file ``out``, as
    ``search.latency`` says (device, batch size), so that searches elsewhere can use it
    (``search.latency.table``). Parts already in ``out`` are kept, not timed again. Returns what
    was done: the parts, how many were new, and the last draw that added one."""
    from .cost import ArchitectureCost
    from .data import load_dataset
    from .network import num_classes_of
    from .space import SearchSpace

    options = config.search.latency_options
    device, threads = latency_device(options, resolve_device(config.device))
    entries: dict[str, float] = {}
    if out.exists():
        fix = "write to another file or set the batch size to match"
        entries = LatencyTable.read(out, batch_size=options.batch_size, fix=fix)["entries"]
    space = SearchSpace(config)
    dataset = load_dataset(config.data)
    classes = num_classes_of(config, dataset.num_classes)
    table = LatencyTable(device, options.batch_size, out, entries, threads=threads)
    table.save()
    cost = ArchitectureCost(space, dataset.sample_shape, classes, "latency", latency=table)
    if space.size <= draws:  # every architecture, once: the table is complete
        samples: Iterable[Any] = itertools.product(*(range(c.size) for c in space.choices))
        draws = space.size
    else:
        rng = np.random.default_rng(config.seed)
        first = [0] * len(space.choices)
        samples = (first if k == 0 else space.random_sample(rng) for k in range(draws))
    last_new, start = 0, time.perf_counter()
    tell(f"timing parts on {device} at batch {options.batch_size} into {out}")
    for k, sample in enumerate(samples):
        before = table.timed
        cost.uncached(sample, "latency")
        if table.timed > before:
            last_new = k + 1
    return {
        "parts": len(table.entries),
        "timed": table.timed,
        "draws": draws,
        "last_new_draw": last_new,
        "seconds": time.perf_counter() - start,
        "device": str(device),
    }


def latency_device(
    options: LatencyConfig, run_device: torch.device
) -> tuple[torch.device, int | None]:
    """Where ``search.latency`` times (default: ``run_device``) and on how many CPU threads."""
    if options.device is None:
        device = run_device
    else:  # not `auto` as the advice: it would time on the CPU unasked
        fix = "use search.latency.device: cpu, or remove it to time on the run's device"
        device = resolve_device(options.device, "search.latency.device", fix)
    if options.threads is not None and device.type != "cpu":
        raise UserError(
            f"search.latency.threads: CPU threads, but the parts are timed on {device}; remove "
            "it or set search.latency.device: cpu"
        )
    return device, options.threads
