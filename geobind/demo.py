"""The demo: the whole method on the embedded synthetic world, end to end.

World -> CLIP (ground photos + captions; towers the project pretrained on a world of its own,
imported as they are) -> the anchor stage (satellite tiles against the frozen CLIP image
tower) -> the audio stage (HTSAT, from the sound tower the project pretrained CLAP-style on that
world's sounds and their captions, against the frozen anchor) ->
the location stage (the geobind-location plugin's own recipe, on the audio stage's tiles) ->
a retrieval table on held-out places that carry every modality, including the pairs that were
never trained together (audio<->text, audio<->ground, location<->text).
"""

from __future__ import annotations

import dataclasses
import json
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from geobind.data.pairs import open_pairs
from geobind.data.synthetic import DATASETS, PARTIAL, SOUNDS, STAMP, other_world, world_record
from geobind.data.world_source import (
    WorldOptions,
    build_world,
    make_world,
    refresh_class_words,
    renders_fingerprint,
)
from geobind.encoders.weights import atomic_write
from geobind.errors import GeobindError
from geobind.eval.breakdown import BREAKDOWN_PAIRS, format_breakdown, retrieval_by_class
from geobind.eval.embed import embed_columns
from geobind.eval.evaluate import baselines, format_baselines
from geobind.eval.report import DEFAULT_QUERIES, write_report
from geobind.eval.retrieval import ranks, recall_metrics, retrieval_table
from geobind.eval.zeroshot import unlearned_note, zeroshot_landcover
from geobind.recipes import find_recipe
from geobind.space import last_run, load_space, log_records
from geobind.train import load_recipe, train

__all__ = ["CLIP_PAIRS", "DEMO_PAIRS", "default_recipe", "run_demo"]

#: The CLIP stage's own pair (the paper's first check: CLIP retrieval, here on this world).
CLIP_PAIRS = [("ground", "text"), ("text", "ground")]

#: The pairs the demo reports, both ways: trained ones, then those that only emerge.
DEMO_PAIRS = [
    ("satellite", "ground"),
    ("ground", "satellite"),
    ("satellite", "audio"),
    ("audio", "satellite"),
    ("satellite", "text"),
    ("text", "satellite"),
    ("audio", "text"),
    ("text", "audio"),
    ("audio", "ground"),
    ("ground", "audio"),
    ("location", "satellite"),
    ("satellite", "location"),
    ("location", "text"),
    ("text", "location"),
]


def default_recipe() -> Path:
    """The demo's recipe, ``world/demo``, as the installed package carries it."""
    return find_recipe("world/demo")


def example_places(space: Any, dataset: str) -> list[tuple[str, str]]:
    """A location query for the report, when the space holds location: the first held-out
    place's coordinates (its own tile should rank near the top)."""
    if "location" not in space.modalities:
        return []
    first = open_pairs(dataset).take([0], columns=["lat", "lon"]).to_pylist()[0]
    return [("location", f"{first['lat']:.4f},{first['lon']:.4f}")]


def ensure_world(out: Path, places: int, seed: int, say: Callable[[str], None]) -> Path:
    """Generate the world into ``out`` unless the same world is already there: the same
    options, rendered the same (:func:`renders_fingerprint`). The demo's own folder holding
    another world (other options, or rendered otherwise: its sounds changed, say) has it
    generated again, its datasets replaced; a world left unfinished, or of fewer places, is
    finished."""
    options = WorldOptions(out=str(out), places=places, seed=seed)
    stamp, partial = out / STAMP, out / PARTIAL
    world = None
    if stamp.exists() or partial.exists():
        # the same world wherever it lies: a copied or moved world is not generated again, nor
        # one made with another number of workers (they render the same places to the bit)
        world = build_world(options)  # ~4 s: the map, to render a few places
        differ = other_world(out, options, {"renders": renders_fingerprint(world)})
        if differ:
            say(f"world: {out} holds another world ({differ}); generating it again")
            for name in (*DATASETS, *SOUNDS):  # only what a world writes there: its datasets
                shutil.rmtree(out / f"{name}.lance", ignore_errors=True)
            stamp.unlink(missing_ok=True)
            partial.unlink(missing_ok=True)
        elif partial.exists():
            say(f"world: {out} was left unfinished; generating the rest")
        elif world_record(out).get("places") != places:
            say(f"world: {out} holds fewer places; generating the rest")
        else:
            say(f"world: {out} (already generated)")
            # the held-out set only, which the demo's zero-shot reads: a new version of a
            # training set would be new data to the stages, and they would all train again
            if refresh_class_words(out, ["heldout"]):
                say("world: class words of heldout brought up to date (zero-shot reads them)")
            return out
    start = time.perf_counter()
    reports = make_world(options, world=world)
    counts = ", ".join(f"{name} {r.imported + r.already_present}" for name, r in reports.items())
    say(f"world: {places} places in {time.perf_counter() - start:.0f} s -> {out} ({counts})")
    return out


def run_demo(
    out: str | Path = "geobind-demo",
    places: int = 10000,
    seed: int = 0,
    recipe: str | Path | None = None,
    overrides: list[str] | None = None,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
) -> dict:
    """Run the demo into ``out``; returns its results (also written as JSON and Markdown).

    Stages train one at a time; after each, the held-out places are embedded again, the new
    pair's recall printed, and every pair of earlier stages checked to be unchanged (their
    encoders are frozen, so their embeddings must be identical to the bit). The final table
    sets each trained pair beside its floor and the label ceiling.
    """
    out = Path(out)
    start = time.perf_counter()
    world = ensure_world(out / "world", places, seed, say)
    plan = load_recipe(
        recipe or default_recipe(),
        [f"space={out / 'space'}", f"data_dir={world}", *(overrides or [])],
    )
    heldout = str(world / "heldout.lance")
    stages, embeddings = train_stages(plan, heldout, say)
    space = load_space(plan.space)
    text = space.entry("text")
    say(
        f"text: aligned through CLIP (stage {text.stage}, with "
        f"{(text.aligned_to or {}).get('modality')}); no stage of its own"
    )
    results = evaluate_demo(space, heldout, embeddings, say)
    results["stages"] = stages
    report = write_report(
        space.path,
        out / "report.html",
        data=heldout,
        queries=[*DEFAULT_QUERIES, *example_places(space, heldout)],
        embeddings=embeddings,
        results=results,
    )
    elapsed = time.perf_counter() - start
    results.update(seconds=elapsed, report=str(report))
    atomic_write(out / "results.json", json.dumps(results, indent=2).encode())
    atomic_write(out / "results.md", ("```\n" + results["printed"] + "\n```\n").encode())
    say(
        f"report: {report.resolve()}\n(open it in a browser; `geobind search {space.path} "
        f'--text "waves on a sandy beach"` queries the space)\ndemo finished in {elapsed:.0f} s'
    )
    return results


#: Held-out places each frozen encoder embeds again after every later stage.
CHECK_ROWS = 64


def train_stages(
    plan: Any, heldout: str, say: Callable[[str], None]
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """Train the recipe's stages one at a time; after each, what it cost and what it
    gives on the held-out places. Returns the stage records and the final embeddings."""
    records: list[dict[str, Any]] = []
    before: dict[str, torch.Tensor] = {}
    weights: dict[str, str] = {}  # modality -> sha256 of its weights after the last stage
    for name, stage in plan.stages.items():
        began = time.perf_counter()
        trained = bool(train(dataclasses.replace(plan, stages={name: stage}), say=say))
        seconds = time.perf_counter() - began
        # an encoder an earlier run aligned to what this run has just trained again is stale
        # until its own stage, later in the plan, trains it again; the end checks none is left
        space = load_space(plan.space, allow_stale=True)
        # What the stage trained is new too, even where the space held an older one (a run
        # over an earlier run's space, after the stage's recipe changed): it was not frozen.
        own = {stage.student.modality, stage.teacher.modality if stage.teacher.train else ""}
        retrained = own if trained else set()
        # A frozen encoder must still be the very weights it was (sha256), stale or not, and
        # give, to the bit, the embeddings it gave for a sample of the places: that catches a
        # moved weight and a changed input path alike, without embedding every place with
        # every encoder after every stage. Only the stage's new encoders embed every place.
        now = {m: e.sha256 for m, e in space.entries.items()}
        moved = [m for m in weights if m not in retrained and now.get(m) != weights[m]]
        live = set(space.entries) - waiting(space)
        frozen = [m for m in before if m not in retrained and m in live]
        kept = {m: before[m] for m in frozen}
        embeddings = {**kept, **embed_columns(space, heldout, only=live - set(frozen))}
        sample = embed_columns(space, heldout, rows=CHECK_ROWS, only=frozen)
        record = stage_record(space, name, stage, seconds if trained else None, embeddings)
        record["unchanged"] = [
            m
            for m in frozen
            if m not in moved and torch.equal(before[m][: len(sample[m])], sample[m])
        ]
        weights = now
        changed = moved + [m for m in frozen if m not in record["unchanged"] and m not in moved]
        if changed:  # a frozen encoder moved: the method's promise is broken
            raise GeobindError(
                f"stage {name!r} changed the embeddings of {', '.join(changed)}, "
                f"which it should have left frozen"
            )
        say(stage_line(record))
        records.append(record)
        before = embeddings
    return records, before


def waiting(space: Any) -> set[str]:
    """Encoders of an earlier run aligned to weights trained again since, and those aligned
    to them in turn: each waits for its own stage to train it again."""
    stale = {m for m in space.entries if space.misaligned(m)}
    partners = {m: (e.aligned_to or {}).get("modality") for m, e in space.entries.items()}
    grew = True
    while grew:
        more = {m for m, p in partners.items() if p in stale} - stale
        stale |= more
        grew = bool(more)
    return stale


def stage_record(
    space: Any, name: str, stage: Any, seconds: float | None, embeddings: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """What one stage cost (time, memory, parameters) and the held-out recall of its pair;
    ``seconds`` is None for a stage an earlier run trained."""
    student, teacher = stage.student.modality, stage.teacher.modality
    log = last_run(log_records(_read(space.path / "logs" / f"{name}.jsonl")))
    rate = next((r["samples_per_s"] for r in reversed(log) if "samples_per_s" in r), None)
    recall = {}
    for q, g in ((student, teacher), (teacher, student)):
        if q in embeddings and g in embeddings:
            recall[f"{q} -> {g}"] = recall_metrics(ranks(embeddings[q], embeddings[g]), (10,))
    encoder = space.encoder(student)
    return {
        "stage": name,
        "student": student,
        "teacher": teacher,
        "seconds": seconds,
        "steps": log[-1]["step"] if log else 0,
        "samples_per_s": rate,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "heldout": {pair: m["R@10"] for pair, m in recall.items()},
    }


def stage_line(record: dict[str, Any]) -> str:
    """One line about a trained stage."""
    rate = f", {record['samples_per_s']:.0f} samples/s" if record["samples_per_s"] else ""
    pairs = ", ".join(f"{p} {100 * r:.1f}%" for p, r in record["heldout"].items())
    same = f"; unchanged: {', '.join(record['unchanged'])}" if record["unchanged"] else ""
    took = (
        f"in {record['seconds']:.0f} s{rate}"
        if record["seconds"] is not None
        else "(trained by an earlier run)"
    )
    return (
        f"stage {record['stage']}: {record['steps']} steps {took}, "
        f"{record['parameters'] / 1e6:.2f} M parameters, peak memory "
        f"{record['peak_memory_mb']:.0f} MB; held-out R@10 {pairs}{same}"
    )


def evaluate_demo(
    space: Any, heldout: str, embeddings: dict[str, torch.Tensor], say: Callable[[str], None]
) -> dict[str, Any]:
    """The demo's final tables: every pair beside its floor and ceiling, zero-shot land
    cover, retrieval by dominant land cover."""
    ks = (1, 10)
    places = len(next(iter(embeddings.values())))
    result: dict[str, Any] = {
        "retrieval": retrieval_table(embeddings, ks),
        "ks": list(ks),
        "places": places,
    }
    result.update(baselines(space, heldout, None, ks, embeddings=embeddings))
    zeroshot = zeroshot_landcover(space, heldout, embeddings=embeddings)
    breakdown = retrieval_by_class(embeddings, heldout, range(places), BREAKDOWN_PAIRS, k=10)
    title = (
        f"Retrieval on {places} held-out places (each query's own place is the one right "
        f"answer; chance R@1 {100 / places:.1f}%, R@10 {1000 / places:.1f}%):"
    )
    comparison = format_baselines(result, DEMO_PAIRS + CLIP_PAIRS)
    printed = "\n\n".join(
        [title + "\n" + comparison, zeroshot_line(zeroshot), format_breakdown(breakdown)]
    )
    say("\n" + printed + "\n")
    return {**result, "zeroshot": zeroshot, "breakdown": breakdown, "printed": printed}


def zeroshot_line(result: dict[str, Any]) -> str:
    """Zero-shot accuracy per modality on one line, with chance and the majority class."""
    if result.get("skipped"):
        return f"Zero-shot land cover: skipped ({result['skipped']})"
    mods = result["modalities"]
    first = next(iter(mods.values()))
    scores = ", ".join(f"{m} {100 * s['accuracy']:.1f}%" for m, s in mods.items())
    line = (
        f"Zero-shot land cover from text prompts ({len(result['classes'])} classes): {scores} "
        f"(chance {100 * first['chance']:.1f}%, always {first['majority_class']!r} "
        f"{100 * first['majority']:.1f}%)"
    )
    if result.get("unlearned_words"):
        line += "\n" + unlearned_note(result["unlearned_words"])
    return line


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""
