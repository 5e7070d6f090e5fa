"""The demo: the whole method on the embedded synthetic world, end to end.

World -> CLIP pre-training (ground photos + captions) -> the anchor stage (satellite tiles
against the frozen CLIP image tower) -> the audio stage (HTSAT against the frozen anchor) ->
a retrieval table on held-out places that carry every modality, including the pairs that were
never trained together (audio<->text, audio<->ground).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from geobind.data.world_source import WorldOptions, make_world
from geobind.eval.tables import format_table
from geobind.space import load_space

__all__ = ["DEMO_PAIRS", "default_recipe", "run_demo"]

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
]


def default_recipe() -> Path:
    """The demo recipe in this checkout's ``recipes/world/``."""
    return Path(__file__).resolve().parent.parent / "recipes" / "world" / "demo.yaml"


def ensure_world(out: Path, places: int, seed: int, say: Callable[[str], None]) -> Path:
    """Generate the world into ``out`` unless the same world is already there."""
    options = WorldOptions(out=str(out), places=places, seed=seed)
    stamp = out / "world.json"
    if stamp.exists():
        made = json.loads(stamp.read_text())
        if all(made.get(k) == v for k, v in asdict(options).items()):
            say(f"world: {out} (already generated)")
            return out
    start = time.perf_counter()
    reports = make_world(options)
    counts = ", ".join(f"{name} {r.imported}" for name, r in reports.items())
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
    """Run the demo into ``out``; returns the retrieval table (also written as JSON/Markdown)."""
    from geobind.eval.embed import embed_columns  # torch, from here on
    from geobind.eval.report import write_report
    from geobind.eval.retrieval import retrieval_table
    from geobind.train import load_recipe, train

    out = Path(out)
    start = time.perf_counter()
    world = ensure_world(out / "world", places, seed, say)
    plan = load_recipe(
        recipe or default_recipe(),
        [f"space={out / 'space'}", f"data_dir={world}", *(overrides or [])],
    )
    train(plan, say=say)
    space = load_space(plan.space)
    text = space.entry("text")
    say(
        f"text: aligned through CLIP (stage {text.stage}, with "
        f"{(text.aligned_to or {}).get('modality')}); "
        f"no stage of its own"
    )
    heldout = str(world / "heldout.lance")
    embeddings = embed_columns(space, heldout)
    table = retrieval_table(embeddings)
    printed = format_table(table, ks=(1, 10), pairs=DEMO_PAIRS)
    say(
        f"\nRetrieval on {int(table[0]['gallery_size'])} held-out places (each query's own "
        f"place is the one right answer):\n{printed}\n"
    )
    (out / "results.md").write_text("```\n" + printed + "\n```\n")
    report = write_report(space.path, out / "report.html", data=heldout, embeddings=embeddings)
    elapsed = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps({"table": table, "seconds": elapsed}, indent=2))
    say(
        f"report: {report.resolve()}\n(open it in a browser; `geobind search {space.path} "
        f'--text "waves on a sandy beach"` queries the space)\ndemo finished in {elapsed:.0f} s'
    )
    return {"table": table, "seconds": elapsed, "report": str(report)}
