"""The synthetic world as Lance pair datasets: the embedded default data set.

Places are dealt to disjoint sets, as real data comes (nobody has every modality at every
place): ground photos with captions (the demo's CLIP pre-training), satellite tiles with ground
photos (the anchor stage), satellite tiles with sounds (the audio stage), and a held-out set
carrying every modality at the same places, for the retrieval that emerges between modalities
never trained together. Every row keeps the true land-cover fractions as ``landcover``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from geobind.config import opt
from geobind.data.importing import Candidate, import_pairs
from geobind.errors import ConfigError
from geobind.plugins import get_registry

__all__ = ["DATASETS", "WorldOptions", "make_world"]

#: dataset name -> (share of places, modality columns)
DATASETS: dict[str, tuple[float, tuple[str, ...]]] = {
    "captions": (0.3, ("ground", "text")),
    "ground": (0.3, ("satellite", "ground")),
    "audio": (0.3, ("satellite", "audio")),
    "heldout": (0.1, ("satellite", "ground", "audio", "text")),
}
_MODALITY_COLUMN = {"satellite": "satellite", "ground": "ground", "audio": "audio",
                    "text": "caption"}


@dataclass
class WorldOptions:
    """Generate the synthetic world into ``out`` as four pair datasets."""

    out: str = opt("", "folder to write the Lance datasets into")
    places: int = opt(10000, "number of places, dealt to the four datasets")
    seed: int = opt(0, "the world's seed: the same seed gives identical bytes")
    workers: int = opt(2, "processes generating places")
    tile_size: int = opt(64, "satellite tile side, pixels")
    ground_size: int = opt(64, "ground view side, pixels")
    sample_rate: int = opt(16000, "audio sample rate, Hz")
    clip_seconds: float = opt(5.0, "audio clip length, seconds")


def dataset_of(index: int) -> str:
    """Which dataset place ``index`` belongs to: an interleaving, so each set spans the map."""
    slot = index % 10
    edges, total = [], 0.0
    for name, (share, _) in DATASETS.items():
        total += share * 10
        edges.append((round(total), name))
    return next(name for edge, name in edges if slot < edge)


def _world_config(options: WorldOptions) -> Any:
    from geobind.world import WorldConfig

    return WorldConfig(seed=options.seed, places=options.places, tile_size=options.tile_size,
                       ground_size=options.ground_size, sample_rate=options.sample_rate,
                       clip_seconds=options.clip_seconds)


_WORLD: Any = None


def _init_worker(config: Any) -> None:
    global _WORLD
    from geobind.world import World

    _WORLD = World(config)


def _make_places(job: tuple[list[int], tuple[str, ...]]) -> list[dict[str, Any]]:
    indices, modalities = job
    wanted = [_MODALITY_COLUMN[m] for m in modalities if m != "satellite"]
    out = []
    for i in indices:
        p = _WORLD.place(i, modalities=wanted)
        out.append({"index": i, "id": p.id, "lat": p.lat, "lon": p.lon,
                    "satellite": p.satellite, "ground": p.ground, "audio": p.audio,
                    "caption": p.caption, "fractions": p.fractions.tolist()})
    return out


def _generate(pool: Any, indices: list[int], modalities: tuple[str, ...]
              ) -> Iterator[dict[str, Any]]:
    """Places ``indices`` in order, by the pool's workers (or here when there is no pool)."""
    chunks = [(indices[s:s + 25], modalities) for s in range(0, len(indices), 25)]
    for batch in (pool.imap(_make_places, chunks) if pool else map(_make_places, chunks)):
        yield from batch


def _candidates(places: Iterator[dict[str, Any]], name: str, bar: Any) -> Iterator[Any]:
    for place in places:
        bar.update(1)
        yield Candidate(id=place["id"], lat=place["lat"], lon=place["lon"],
                        values={m: place[_MODALITY_COLUMN[m]] for m in DATASETS[name][1]},
                        split="test" if name == "heldout" else None,
                        extra={"landcover": place["fractions"]})


def make_world(options: WorldOptions, progress: bool = True) -> dict[str, Any]:
    """Generate the world and write ``OUT/{captions,ground,audio,heldout}.lance``."""
    import multiprocessing

    import pyarrow as pa
    from tqdm import tqdm

    from geobind.world import LAND_COVERS

    if not options.out:
        raise ConfigError("world: 'out' (a folder) is required")
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    registry, config = get_registry(), _world_config(options)
    label_type = pa.list_(pa.float32(), len(LAND_COVERS))
    pool = None
    if options.workers > 1:  # spawn: Lance and torch are not fork-safe
        pool = multiprocessing.get_context("spawn").Pool(
            options.workers, initializer=_init_worker, initargs=(config,))
    else:
        _init_worker(config)
    reports = {}
    bar = tqdm(total=options.places, desc="world", unit=" places", disable=not progress,
               mininterval=1.0)
    try:
        for name, (_, modalities) in DATASETS.items():
            indices = [i for i in range(options.places) if dataset_of(i) == name]
            reports[name] = import_pairs(
                out / f"{name}.lance", _candidates(_generate(pool, indices, modalities), name, bar),
                {m: registry.modality(m) for m in modalities}, extra={"landcover": label_type},
                check=False)  # generated here, and decoded by the world's own tests
    finally:
        bar.close()
        if pool:
            pool.terminate()
    (out / "world.json").write_text(json.dumps(
        {**asdict(options), "out": str(out), "land_covers": list(LAND_COVERS),
         "datasets": {n: r.imported for n, r in reports.items()}}, indent=2))
    return reports


def world_summary(reports: dict[str, Any]) -> str:
    """One line per dataset."""
    return "\n".join(f"{name:9s} {r.imported:6d} rows  {r.dataset}" for name, r in reports.items())
