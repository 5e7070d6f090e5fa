"""The demo's pretrained towers: CLIP's two towers, the anchor and the sound tower aligned to it
that `world/pretrain` trains, and CLAP's sound tower `world/pretrain-clap` trains, written
where the demo takes them from (``geobind/recipes/world/weights/``).

GeoBind starts from a CLIP pretrained on other data than the places it binds; no CLIP can be
downloaded here, so the project pretrains a small one on a synthetic world of its own (another
region, three times the demo's size; ``recipes/world/pretrain.yaml``) and ships it, as a
project would ship any small model its examples need. :func:`export_clip` copies the towers out
of that space, and :func:`shipped_clip` tells which recipe, data and files they came from::

    python -m geobind.train.pretrained geobind-pretrain/space geobind/recipes/world/weights

The text tower's token table has a row for every one of the tokenizer's 49,408 tokens; the
pretraining captions use 135. A row whose token no caption of the stage's dataset holds was
never trained (its gradient is zero at every step): it stays at its random start, shrunk by
weight decay. The export sets those rows to zero, so that a word the tower never read adds
nothing to an embedding instead of a random direction, and the file (27.7 MB, 25.3 MB of it
that table) compresses to 2.3 MB in git and in a wheel. Every text made of trained tokens
(every caption, every zero-shot prompt) embeds exactly as in the trained space.

GeoBind's audio encoder starts from CLAP's (HTS-AT trained on sounds and their captions) before
its stage aligns it to the anchor. :func:`export_clap` copies the sound tower that
``recipes/world/pretrain-clap.yaml`` trains on the same pretraining world's sounds and their
captions (``sounds.lance``: what is heard in each clip, source by source) into
``clap-audio.safetensors``, with ``clap.json`` beside it; the demo's audio stage starts from
it (``recipes/world/audio.yaml``). Its text tower is not kept: the demo's text is CLIP's.

GeoBind's anchor is itself a pretrained model (its stage 1 trained on millions of pairs) that
a region's own pairs then adapt. ``world/pretrain`` trains one after its CLIP stage, as the
demo's chain does (stage 1 against the frozen ground tower, from its weights), on the same
pretraining world's 24,300 tile and panorama pairs; :func:`export_anchor` copies that satellite
tower into ``anchor-satellite.safetensors`` with ``anchor.json``, and the demo's anchor stage
starts from it (``recipes/world/anchor.yaml``).

GeoBind's stage 2 likewise: ``world/pretrain`` then aligns CLAP's sound tower to that anchor on
the pretraining world's 24,300 pairs of tile and sound, three times the demo's; :func:`export`
copies the result into ``anchored-audio.safetensors`` with ``anchored.json``
(:func:`export_anchored`), and the demo's audio stage adapts it to its own region
(``recipes/world/audio.yaml``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from geobind.data.pairs import open_pairs
from geobind.data.synthetic import world_from_record, world_record
from geobind.encoders.openclip import tokenizer
from geobind.encoders.weights import atomic_write, read_state_dict, save_state_dict, sha256_hex
from geobind.errors import GeobindError, writing
from geobind.recipes import shipped_folder
from geobind.space import Space
from geobind.world.world import places_digest

__all__ = [
    "SHIPPED",
    "export",
    "export_anchor",
    "export_anchored",
    "export_clap",
    "export_clip",
    "made_of",
    "pretraining_world",
    "shipped_anchor",
    "shipped_anchored",
    "shipped_clap",
    "shipped_clip",
    "trained_tokens",
    "world_fingerprint",
]

#: Where the shipped towers live: ``weights/`` beside the world recipes (in the package).
SHIPPED = shipped_folder() / "world" / "weights"

#: The files :func:`export_clip` writes, by modality.
FILES = {"text": "clip-text.safetensors", "ground": "clip-ground.safetensors"}
#: The file :func:`export_clap` writes, by modality.
CLAP_FILES = {"audio": "clap-audio.safetensors"}
#: The file :func:`export_anchor` writes, by modality.
ANCHOR_FILES = {"satellite": "anchor-satellite.safetensors"}
#: The file :func:`export_anchored` writes, by modality.
ANCHORED_FILES = {"audio": "anchored-audio.safetensors"}

#: The text tower's token table, in its state dict.
TOKEN_TABLE = "token_embedding.weight"


def trained_tokens(captions: Any, context_length: int) -> torch.Tensor:
    """``[n]`` sorted token ids that CLIP's tokenizer gives ``captions`` (padding included):
    the rows of the token table a tower trained on them has trained."""
    seen: set[int] = set()
    tokenize = tokenizer(context_length)
    for start in range(0, len(captions), 4096):
        ids = tokenize(list(captions[start : start + 4096]))
        seen.update(torch.unique(ids).tolist())
    return torch.tensor(sorted(seen), dtype=torch.long)


#: Places of the pretraining world whose bytes :func:`world_fingerprint` hashes.
FINGERPRINT_PLACES = 12


def world_fingerprint(world: Any, n: int = FINGERPRINT_PLACES) -> str:
    """A hash of the first ``n`` places of a synthetic world (tile, panorama, caption): equal
    only while the world's generator renders them as it did when the towers were pretrained."""
    return places_digest(
        world, n, ("ground", "caption"), lambda p: (p.satellite, p.ground, p.caption.encode())
    )


def sounds_fingerprint(world: Any, n: int = FINGERPRINT_PLACES) -> str:
    """A hash of the sounds of the first ``n`` places of a synthetic world (clip and what is
    heard in it): equal only while the world renders them as when the sound tower trained."""
    return places_digest(world, n, ("audio",), lambda p: (p.audio, p.sound_caption.encode()))


def pretraining_world(record: dict[str, Any]) -> Any:
    """The :class:`~geobind.world.World` the shipped towers were pretrained on, built again
    from the options :func:`export_clip` or :func:`export_clap` recorded."""
    return world_from_record(record["world"]["options"])


def _trained_stage(space: Space, modality: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The recipe of the stage that trained ``modality``'s tower in ``space``, the pair dataset
    it trained on, and the options of the synthetic world that dataset came from (without
    where it was written); an error naming what is missing otherwise."""
    recipe = space.entry(modality).recipe or {}
    data = recipe.get("data")
    if not data or recipe.get("max_steps") == 0:
        raise GeobindError(
            f"{space.path}: its {modality} tower was not trained here on a pair dataset "
            "(imported as it was, or from an older geobind): export the space that trained it"
        )
    # the synthetic world the pairs came from (or an error naming the missing record)
    settings = world_record(Path(str(data)).parent)
    settings.pop("out", None)  # where it was written: no part of what it is
    return recipe, str(data), settings


def made_of(recipe: dict[str, Any]) -> dict[str, Any]:
    """What of a stage's recipe (as a dict) makes its tower, as a record keeps it.

    Where its data lay and what Lance wrote it as differ from run to run; the rest of the
    recipe is what makes the towers, and `make pretrain` makes them to the bit. A side that
    started from a file geobind ships is named as recipes name it (``${shipped:...}``), not by
    where this checkout lies."""
    kept = {k: v for k, v in recipe.items() if k not in ("data", "data_identity", "hash")}
    root = f"{shipped_folder()}/"
    for side in ("student", "teacher"):
        weights = (kept.get(side) or {}).get("weights")
        if isinstance(weights, str) and weights.startswith(root):
            kept[side] = {**kept[side], "weights": f"${{shipped:{weights[len(root) :]}}}"}
    return kept


def _write_record(path: Path, record: dict[str, Any]) -> None:
    with writing(path):  # last: a record beside towers it describes
        atomic_write(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())


def export_clip(space_path: str | Path, folder: str | Path = SHIPPED) -> dict[str, Any]:
    """Write the CLIP stage's towers of the space at ``space_path`` to ``folder``: the text
    tower with its untrained token rows zeroed, the ground tower as trained, and ``clip.json``
    (their configs, checksums, the stage's recipe and metrics). Returns that record."""
    space = Space(space_path)
    for modality in FILES:
        if not space.has(modality):
            raise GeobindError(f"{space.path}: no {modality!r} tower (train world/pretrain first)")
    text = space.entry("text")
    recipe, data, settings = _trained_stage(space, "text")
    try:
        captions = open_pairs(data).to_table(columns=["text"]).column("text").to_pylist()
    except Exception as exc:  # moved, or not a dataset: the rows to keep cannot be known
        raise GeobindError(
            f"{space.path}: cannot read the captions its CLIP stage trained on ({data}): {exc}"
        ) from None
    world = world_from_record(settings)
    state = read_state_dict(space.weights_path("text"))
    table = state[TOKEN_TABLE]
    keep = trained_tokens(captions, int(text.config["context_length"]))
    zeroed = torch.zeros_like(table)
    zeroed[keep] = table[keep]
    state[TOKEN_TABLE] = zeroed
    out = Path(folder)
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        save_state_dict(out / FILES["text"], state)
        atomic_write(out / FILES["ground"], space.weights_path("ground").read_bytes())
    record: dict[str, Any] = {
        "note": "the demo's CLIP, pretrained by recipes/world/pretrain.yaml; see "
        "geobind/train/pretrained.py",
        "towers": {
            m: {
                "file": FILES[m],
                "sha256": sha256_hex((out / FILES[m]).read_bytes()),
                "config": space.entry(m).config,
            }
            for m in FILES
        },
        "trained_tokens": len(keep),
        "world": {"options": settings, "fingerprint": world_fingerprint(world)},
        "recipe": made_of(recipe),
        "metrics": text.metrics,
    }
    _write_record(out / "clip.json", record)
    return record


#: What each single tower the export writes is, in its record, by the record's name.
NOTES = {
    "clap": "the demo's CLAP sound tower, pretrained by recipes/world/pretrain-clap.yaml; "
    "see geobind/train/pretrained.py",
    "anchor": "the demo's pretrained anchor, trained by recipes/world/pretrain.yaml after "
    "its CLIP stage; see geobind/train/pretrained.py",
    "anchored": "the demo's pretrained sound tower, CLAP's aligned to the pretrained anchor by "
    "recipes/world/pretrain.yaml after its anchor stage; see geobind/train/pretrained.py",
}


def _export_tower(
    space_path: str | Path,
    folder: str | Path,
    modality: str,
    name: str,
    trained_by: str,
    fingerprint: Any,
) -> dict[str, Any]:
    """Write ``modality``'s tower, trained in the space at ``space_path`` by the recipe
    ``trained_by``, to ``folder/name`` as it is, and its record beside it (``name``'s stem up to
    the first ``-``, ``.json``): config, checksum, the stage's recipe and metrics, and the
    pretraining world with ``fingerprint`` of it. Returns that record."""
    space = Space(space_path)
    if not space.has(modality):
        raise GeobindError(f"{space.path}: no {modality!r} tower (train {trained_by} first)")
    entry = space.entry(modality)
    recipe, _, settings = _trained_stage(space, modality)
    world = world_from_record(settings)
    out = Path(folder)
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        data = space.weights_path(modality).read_bytes()
        atomic_write(out / name, data)
    kind = name.split("-")[0]
    record: dict[str, Any] = {
        "note": NOTES[kind],
        "towers": {modality: {"file": name, "sha256": sha256_hex(data), "config": entry.config}},
        "world": {"options": settings, "fingerprint": fingerprint(world)},
        "recipe": made_of(recipe),
        "metrics": entry.metrics,
    }
    _write_record(out / f"{kind}.json", record)
    return record


def export_clap(space_path: str | Path, folder: str | Path = SHIPPED) -> dict[str, Any]:
    """Write the sound tower that ``world/pretrain-clap`` trained in the space at
    ``space_path`` to ``folder`` as it is, and ``clap.json`` (its config, checksum, the
    stage's recipe and metrics, the pretraining world). Returns that record."""
    name = CLAP_FILES["audio"]
    return _export_tower(
        space_path, folder, "audio", name, "world/pretrain-clap", sounds_fingerprint
    )


def export_anchor(space_path: str | Path, folder: str | Path = SHIPPED) -> dict[str, Any]:
    """Write the anchor (the satellite tower) that ``world/pretrain`` trained in the space at
    ``space_path`` to ``folder`` as it is, and ``anchor.json`` (its config, checksum, the
    stage's recipe and metrics, the pretraining world). Returns that record."""
    name = ANCHOR_FILES["satellite"]
    return _export_tower(space_path, folder, "satellite", name, "world/pretrain", world_fingerprint)


def export_anchored(space_path: str | Path, folder: str | Path = SHIPPED) -> dict[str, Any]:
    """Write the sound tower that ``world/pretrain`` aligned to its anchor in the space at
    ``space_path`` to ``folder`` as it is, and ``anchored.json`` (its config, checksum, the
    stage's recipe and metrics, the pretraining world). Returns that record."""
    name = ANCHORED_FILES["audio"]
    return _export_tower(space_path, folder, "audio", name, "world/pretrain", sounds_fingerprint)


#: What :func:`export` writes after CLIP's towers, where the space holds it: the modality, the
#: record's name, its exporter.
AFTER_CLIP = (("satellite", "anchor", export_anchor), ("audio", "anchored", export_anchored))


def export(space_path: str | Path, folder: str | Path = SHIPPED) -> dict[str, dict[str, Any]]:
    """Export what the space at ``space_path`` pretrained: CLIP's towers (a space with a ground
    tower, :func:`export_clip`), the anchor trained against them where it holds one
    (:func:`export_anchor`) and the sound tower aligned to that anchor where it holds one
    (:func:`export_anchored`); or CLAP's sound tower (a space with an audio tower and no
    ground tower, :func:`export_clap`). Returns each record by what it is (``"clip"``,
    ``"anchor"``, ``"anchored"``, ``"clap"``)."""
    space = Space(space_path)
    if space.has("audio") and not space.has("ground"):
        return {"clap": export_clap(space_path, folder)}
    after = [(m, kind, f) for m, kind, f in AFTER_CLIP if space.has(m)]
    for modality, _, _ in after:
        _trained_stage(space, modality)  # a tower it cannot export stops it before CLIP's
    records = {"clip": export_clip(space_path, folder)}
    for _, kind, exporter in after:
        records[kind] = exporter(space_path, folder)
    return records


def shipped_clip(folder: str | Path = SHIPPED) -> dict[str, Any]:
    """The record :func:`export_clip` wrote beside the shipped towers."""
    return _read_record(Path(folder) / "clip.json", "CLIP towers")


def shipped_anchor(folder: str | Path = SHIPPED) -> dict[str, Any]:
    """The record :func:`export_anchor` wrote beside the shipped anchor."""
    return _read_record(Path(folder) / "anchor.json", "anchor")


def shipped_anchored(folder: str | Path = SHIPPED) -> dict[str, Any]:
    """The record :func:`export_anchored` wrote beside the shipped sound tower."""
    return _read_record(Path(folder) / "anchored.json", "anchored sound tower")


def shipped_clap(folder: str | Path = SHIPPED) -> dict[str, Any]:
    """The record :func:`export_clap` wrote beside the shipped sound tower."""
    return _read_record(Path(folder) / "clap.json", "CLAP sound tower")


def _read_record(path: Path, what: str) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GeobindError(f"{path}: no record of the shipped {what} ({exc})") from None
    if not isinstance(record, dict):
        raise GeobindError(f"{path}: no record of the shipped {what} (not a mapping)")
    return record


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m geobind.train.pretrained SPACE [FOLDER]", file=sys.stderr)
        return 2
    try:
        records = export(*args)
    except (GeobindError, OSError) as exc:  # a full disk names the file it could not write
        print(f"error: {exc}", file=sys.stderr)
        return 1
    where = args[1] if len(args) > 1 else SHIPPED
    for kind, record in records.items():
        files = ", ".join(tower["file"] for tower in record["towers"].values())
        kept = f" ({record['trained_tokens']} trained token rows kept)" if kind == "clip" else ""
        print(f"wrote {files} and {kind}.json to {where}{kept}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
