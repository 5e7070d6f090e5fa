"""The synthetic world as Lance pair datasets: the embedded default data set.

Three training sets, one per stage: ground photos with captions (the demo's CLIP
pre-training), satellite tiles with ground photos (the anchor stage), satellite tiles with
sounds (the audio stage); with ``sounds``, a fourth: each of the audio stage's clips with a
caption of what is heard in it (pretraining a sound encoder on sound and words, as CLAP is;
``make pretrain``); and a held-out set carrying every modality at the same places, for
the retrieval that emerges between modalities never trained together. Held-out places are in
no training set. By default the training sets share their places (each stage then learns from
every training place, three times the pairs of disjoint sets; a stage still reads only its
own two columns, so no stage ever sees, say, sounds beside captions); ``overlap=False`` deals
them out disjointly instead, as separately collected datasets come. Every row keeps the true
land-cover fractions as ``landcover``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from geobind.config import opt
from geobind.data.importing import Candidate, ImportReport, import_pairs
from geobind.data.pairs import open_pairs, read_values
from geobind.encoders.weights import atomic_write
from geobind.errors import ConfigError, GeobindError
from geobind.plugins import get_registry

__all__ = [
    "DATASETS",
    "PARTIAL",
    "SOUNDS",
    "STAMP",
    "WorldOptions",
    "check_modalities",
    "datasets_of",
    "make_world",
    "open_world",
    "other_world",
    "world_datasets",
    "world_record",
    "world_from_record",
]

#: dataset name -> its modality columns
DATASETS: dict[str, tuple[str, ...]] = {
    "captions": ("ground", "text"),
    "ground": ("satellite", "ground"),
    "audio": ("satellite", "audio"),
    "heldout": ("satellite", "ground", "audio", "text"),
}
TRAINING = ("captions", "ground", "audio")
#: the dataset a world made with ``sounds`` also writes: the audio stage's places, each clip
#: with a caption of its sources (``Place.sound_caption``) as its ``text``
SOUNDS: dict[str, tuple[str, ...]] = {"sounds": ("audio", "text")}
_MODALITY_COLUMN = {
    "satellite": "satellite",
    "ground": "ground",
    "audio": "audio",
    "text": "caption",
}
#: where a dataset takes a modality from another of the place's fields
_DATASET_COLUMN = {"sounds": {"text": "sound_caption"}}
#: which of ``World.place``'s renders each of a place's fields needs (the tile needs none)
_RENDER = {"ground": "ground", "audio": "audio", "caption": "caption", "sound_caption": "audio"}


def _field(dataset: str, modality: str) -> str:
    """The place's field that ``dataset``'s ``modality`` column holds."""
    return _DATASET_COLUMN.get(dataset, {}).get(modality, _MODALITY_COLUMN[modality])


#: What a world's folder records of it: ``STAMP`` once it is whole; ``PARTIAL`` while it is
#: being generated (an interrupted run leaves it behind, and the next run resumes against it).
STAMP, PARTIAL = "world.json", "world.partial.json"
#: The options that make another world. ``places`` may grow and ``sounds`` be added (place i
#: renders the same bytes whatever the number of places); ``out`` and ``workers`` play no part.
_SAME_WORLD = (
    "seed",
    "tile_size",
    "ground_size",
    "sample_rate",
    "clip_seconds",
    "audio_format",
    "overlap",
    "ground_view",
)

#: places generated, and written to their datasets, at a time (bounds memory: ~130 KB each)
CHUNK = 500


@dataclass
class WorldOptions:
    """Generate the synthetic world into ``out`` as four pair datasets (five with ``sounds``)."""

    out: str = opt("", "folder to write the Lance datasets into")
    places: int = opt(10000, "number of places: every tenth is held out, the rest train")
    seed: int = opt(0, "the world's seed: the same seed gives identical bytes")
    workers: int = opt(2, "processes generating places")
    tile_size: int = opt(64, "satellite tile side, pixels")
    ground_size: int = opt(64, "ground view side, pixels")
    sample_rate: int = opt(16000, "audio sample rate, Hz")
    clip_seconds: float = opt(5.0, "audio clip length, seconds")
    audio_format: str = opt(
        "wav", "sound files: 'wav' (16-bit PCM) or 'flac' (the same samples, a seventh smaller)"
    )
    overlap: bool = opt(True, "the three training sets share their places (else: disjoint)")
    ground_view: str = opt("panorama", "ground pictures: 'panorama' (360 degrees) or 'photo'")
    sounds: bool = opt(
        False,
        "also write sounds.lance: the audio set's clips, each with a caption of what is heard "
        "in it, to pretrain a sound encoder on (make pretrain; as large as audio.lance)",
    )


def world_datasets(options: WorldOptions) -> dict[str, tuple[str, ...]]:
    """The datasets a world made with ``options`` writes, and their modality columns."""
    return {**DATASETS, **SOUNDS} if options.sounds else dict(DATASETS)


def datasets_of(index: int, overlap: bool = True, sounds: bool = False) -> tuple[str, ...]:
    """The datasets place ``index`` belongs to: every tenth place is held out; the others are
    in every training set, or (``overlap=False``) dealt to one of them in turn, so that each
    set spans the map. With ``sounds``, ``sounds`` holds the places ``audio`` holds."""
    slot = index % 10
    if slot == 9:
        return ("heldout",)
    names = TRAINING if overlap else (TRAINING[slot // 3],)
    return names + ("sounds",) if sounds and "audio" in names else names


def _world_config(options: WorldOptions) -> Any:
    from geobind.world import WorldConfig

    if isinstance(options.places, int) and 0 <= options.places < 10:
        # the held-out set is every tenth place: fewer would write a world with none
        raise ConfigError(
            f"world: places={options.places}: must be >= 10 (every tenth place is held out)"
        )
    return WorldConfig(
        seed=options.seed,
        places=options.places,
        tile_size=options.tile_size,
        ground_size=options.ground_size,
        sample_rate=options.sample_rate,
        clip_seconds=options.clip_seconds,
        audio_format=options.audio_format,
        ground_view=options.ground_view,
    )


def open_world(folder: str | Path) -> Any:
    """The :class:`~geobind.world.World` that :func:`make_world` generated ``folder`` from,
    built again from the options its ``world.json`` records: to render its places again (the
    ceiling benchmarks replay them). A folder without that file is refused by name."""
    return world_from_record(world_record(folder))


def world_record(folder: str | Path) -> dict[str, Any]:
    """What :func:`make_world` recorded of the world it generated into ``folder`` (its
    ``world.json``); a folder without that file is refused by name."""
    stamp = Path(folder) / "world.json"
    try:
        settings = json.loads(stamp.read_text())
    except (OSError, ValueError) as exc:
        raise GeobindError(f"{stamp}: no synthetic world's record ({exc})") from exc
    if not isinstance(settings, dict):
        raise GeobindError(f"{stamp}: no synthetic world's record (not a mapping)")
    return settings


def world_from_record(settings: dict[str, Any]) -> Any:
    """The :class:`~geobind.world.World` of a :func:`world_record` (keys it does not know, and
    where the world was written, play no part in it)."""
    from geobind.world import World

    known = {f.name for f in fields(WorldOptions)} - {"out"}
    options = {k: v for k, v in settings.items() if k in known}
    return World(_world_config(WorldOptions(out="", **options)))


_WORLD: Any = None


def check_modalities(registry: Any = None) -> None:
    """Raise, naming the plugin to install, unless every modality the world's datasets hold
    is registered: before the world is built or anything rendered."""
    registry = registry or get_registry()
    for columns in DATASETS.values():
        for m in columns:
            registry.modality(m)


def _init_worker(world: Any) -> None:
    global _WORLD
    _WORLD = world


def _make_places(job: tuple[list[int], bool, bool]) -> list[dict[str, Any]]:
    indices, overlap, sounds = job
    out = []
    for i in indices:
        needs = {
            _field(name, m)
            for name in datasets_of(i, overlap, sounds)
            for m in {**DATASETS, **SOUNDS}[name]
        }
        p = _WORLD.place(i, modalities={_RENDER[f] for f in needs if f in _RENDER})
        out.append(
            {
                "index": i,
                "id": p.id,
                "lat": p.lat,
                "lon": p.lon,
                "satellite": p.satellite,
                "ground": p.ground,
                "audio": p.audio,
                "caption": p.caption,
                "sound_caption": p.sound_caption,
                "fractions": p.fractions.tolist(),
            }
        )
    return out


def _start(
    pool: Any, indices: list[int], options: WorldOptions
) -> Callable[[], list[dict[str, Any]]]:
    """Start rendering places ``indices`` on the pool's workers; the returned call waits for
    them, in order (without a pool, it renders them here when called)."""
    jobs = [
        (indices[s : s + 25], options.overlap, options.sounds) for s in range(0, len(indices), 25)
    ]
    if pool is None:
        return lambda: [p for batch in map(_make_places, jobs) for p in batch]
    pending = [pool.submit(_make_places, job) for job in jobs]

    def results() -> list[dict[str, Any]]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return [p for job in pending for p in job.result()]
        except BrokenProcessPool as exc:
            raise GeobindError(
                f"world: a worker process rendering places died ({exc}); from a script, "
                "generate the world under `if __name__ == '__main__':` (its workers start a "
                "new Python that imports the script), or with workers=1"
            ) from None

    return results


def _write(
    out: Path,
    places: list[dict[str, Any]],
    options: WorldOptions,
    registry: Any,
    extra: dict[str, Any],
    reports: dict[str, ImportReport],
) -> None:
    """Append rendered places to every dataset they belong to."""
    for name, columns in world_datasets(options).items():
        mine = [
            p for p in places if name in datasets_of(p["index"], options.overlap, options.sounds)
        ]
        if mine:
            _add(
                reports[name],
                import_pairs(
                    out / f"{name}.lance",
                    _candidates(mine, name, columns),
                    {m: registry.modality(m) for m in columns},
                    extra=extra,
                    check=False,
                ),
            )  # generated here, and decoded by the world's own tests


def _candidates(
    places: list[dict[str, Any]], name: str, columns: tuple[str, ...]
) -> list[Candidate]:
    return [
        Candidate(
            id=place["id"],
            lat=place["lat"],
            lon=place["lon"],
            values={m: place[_field(name, m)] for m in columns},
            split="test" if name == "heldout" else None,
            extra={"landcover": place["fractions"]},
        )
        for place in places
    ]


def make_world(
    options: WorldOptions,
    progress: bool = True,
    world: Any = None,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate the world and write ``OUT/{captions,ground,audio,heldout}.lance`` (and, with
    ``sounds``, ``OUT/sounds.lance``).

    Places are generated once each, ``CHUNK`` at a time, and appended to every dataset they
    belong to. An interrupted run leaves whole chunks behind; running it again adds only the
    places still missing (imports skip ids already present), and a run with more places grows
    the world. A folder that holds another world (other options, or ``record`` otherwise) is
    refused before anything is written: the two worlds' places would mix. ``world``: the
    :class:`geobind.world.World` of these options, when the caller has built it already
    (building one takes ~4 s; the workers are sent a copy, 0.1 s, instead of each building
    their own). ``record``: more to keep in ``world.json`` and to check against (what the
    generator renders: :func:`geobind.data.world_source.renders_fingerprint`).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import pyarrow as pa
    from tqdm import tqdm

    from geobind.world import LAND_COVERS

    if not options.out:
        raise ConfigError("world: 'out' (a folder) is required")
    out = Path(options.out)
    registry, config = get_registry(), _world_config(options)  # a bad option fails here
    check_modalities(registry)  # and a missing plugin
    out.mkdir(parents=True, exist_ok=True)
    record = dict(record or {})
    _check_folder(out, options, record)
    settings = {**asdict(options), "out": str(out), **record}
    # first the record of the world under way, then no claim that a whole one is here
    atomic_write(out / PARTIAL, json.dumps(settings, indent=2).encode())
    (out / STAMP).unlink(missing_ok=True)
    extra = {"landcover": pa.list_(pa.float32(), len(LAND_COVERS))}
    if world is None:
        from geobind.world import World

        world = World(config)
    elif world.config != config:
        raise ValueError(f"world: built for {world.config}, not for these options ({config})")
    pool = None
    if options.workers > 1:  # spawn: Lance and torch are not fork-safe
        # not multiprocessing.Pool: it replaces a worker that dies and waits forever for its
        # work, where this executor says the pool is broken
        pool = ProcessPoolExecutor(
            options.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(world,),
        )
    else:
        _init_worker(world)
    reports = {
        name: ImportReport(dataset=str(out / f"{name}.lance")) for name in world_datasets(options)
    }
    bar = tqdm(
        total=options.places, desc="world", unit=" places", disable=not progress, mininterval=1.0
    )
    try:
        present = _present_ids(out, options)
        pending: tuple[list[int], Callable[[], list[dict[str, Any]]]] | None = None

        def write(chunk: tuple[list[int], Callable[[], list[dict[str, Any]]]]) -> None:
            _write(out, chunk[1](), options, registry, extra, reports)
            bar.update(len(chunk[0]))

        for start in range(0, options.places, CHUNK):
            indices = list(range(start, min(start + CHUNK, options.places)))
            dealt = _dealt(indices, options)
            if all(pid in present.get(name, ()) for name, pid in dealt):
                for name, _ in dealt:  # counted as an import of them would count them
                    reports[name].already_present += 1
                bar.update(len(indices))  # a run resumed past this chunk: nothing to render
                continue
            # the workers render this chunk while the previous one is written
            rendered = _start(pool, indices, options)
            if pending:
                write(pending)
            pending = (indices, rendered)
        if pending:
            write(pending)
    finally:
        bar.close()
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)  # at most the jobs under way (~0.3 s)
        _init_worker(None)  # rendered here (one worker): the world is not kept after the run
    counts = {n: r.imported + r.already_present for n, r in reports.items()}
    settings = {**settings, "land_covers": list(LAND_COVERS), "datasets": counts}
    atomic_write(out / STAMP, json.dumps(settings, indent=2).encode())
    (out / PARTIAL).unlink()
    return reports


def other_world(out: Path, options: WorldOptions, record: dict[str, Any]) -> str | None:
    """How the world recorded in ``out`` (whole, or under way) differs from the one
    ``options`` and ``record`` make, in words; ``None`` when it is the same one (or grows into
    it), or when ``out`` records none."""
    for name in (STAMP, PARTIAL):
        path = out / name
        if not path.exists():
            continue
        try:
            made = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            return f"its {name} is unreadable ({exc})"
        if not isinstance(made, dict):
            return f"its {name} is not a record of a world"
        wanted = asdict(options)
        differ = [
            f"{k} {made.get(k)!r}, not {wanted[k]!r}"
            for k in _SAME_WORLD
            if made.get(k) != wanted[k]
        ]
        differ = differ or [  # other options render otherwise: no need to say so again
            "rendered by another version of the world" if k == "renders" else f"{k} otherwise"
            for k, v in record.items()
            if made.get(k) != v
        ]
        if isinstance(made.get("places"), int) and made["places"] > options.places:
            differ.append(f"places {made['places']!r}, not {options.places!r}")
        if made.get("sounds") and not options.sounds:
            differ.append("made with sounds, asked without")
        if differ:
            return "; ".join(differ)
    return None


def _check_folder(out: Path, options: WorldOptions, record: dict[str, Any]) -> None:
    """Refuse to write a world into a folder that holds another: imports skip the ids already
    present, and a place's id is its seed and index, so the places of both would mix (or a
    dataset keep yesterday's renders of today's places). Nothing is written or removed."""
    differ = other_world(out, options, record)
    if differ:
        raise ConfigError(
            f"world: {out} holds another world ({differ}); its places would mix with this "
            "one's. Choose another folder, or remove that world's datasets and records there"
        )
    if not any((out / name).exists() for name in (STAMP, PARTIAL)):
        held = sorted(f"{n}.lance" for n in {**DATASETS, **SOUNDS} if (out / f"{n}.lance").exists())
        if held:
            raise ConfigError(
                f"world: {out} holds {', '.join(held)} but no {STAMP} or {PARTIAL} saying "
                "which world wrote them; this world's places would mix with theirs. Choose "
                "another folder, or remove them"
            )


def _present_ids(out: Path, options: WorldOptions) -> dict[str, set[str]]:
    """The ids each dataset of an interrupted or earlier run already holds."""
    present: dict[str, set[str]] = {}
    for name in world_datasets(options):
        path = out / f"{name}.lance"
        if path.is_dir():
            ds = open_pairs(path)
            present[name] = set(read_values(ds, "id", range(ds.count_rows())))
    return present


def _dealt(indices: list[int], options: WorldOptions) -> list[tuple[str, str]]:
    """``(dataset, place id)`` for every dataset each of places ``indices`` is dealt to."""
    from geobind.world.world import place_id

    return [
        (name, place_id(options.seed, i))
        for i in indices
        for name in datasets_of(i, options.overlap, options.sounds)
    ]


def _add(total: ImportReport, part: ImportReport) -> None:
    """Fold one chunk's import report into the dataset's."""
    total.imported += part.imported
    total.already_present += part.already_present
    total.version = part.version


def world_summary(reports: dict[str, Any]) -> str:
    """One line per dataset."""
    return "\n".join(f"{name:9s} {r.imported:6d} rows  {r.dataset}" for name, r in reports.items())
