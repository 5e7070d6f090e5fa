"""Zero-shot land-cover classification through the space's text encoder.

The classes, and the words that name each, come from the caller or from the dataset: its
``landcover`` column of per-class fractions records them (see
:func:`geobind.data.pairs.label_classes`; the synthetic world records its land covers and the
words its captions use, e.g. ``beach`` for sand). For each class, prompts are built from its
words (``"a view of beach"``); their text embeddings are averaged into one class embedding
(CLIP's prompt ensembling). Every satellite tile, ground photo or sound of a dataset (each
modality it carries and the space embeds, text excepted) is given the class of highest cosine
similarity. The truth is the place's dominant class, the argmax of its fractions. Nothing is
trained for it: audio, for one, never saw a word, so this measures what the bound space
carries across modalities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from geobind.data.pairs import label_classes, open_pairs
from geobind.eval.embed import embed_columns, row_indices
from geobind.eval.tables import markdown_table, percent

__all__ = [
    "CAPTIONS_READ",
    "LABEL_COLUMN",
    "TEMPLATES",
    "TEXT",
    "build_prompts",
    "class_embeddings",
    "class_words",
    "classify",
    "dominant_labels",
    "format_zeroshot",
    "markdown_zeroshot",
    "score",
    "unlearned_note",
    "unlearned_words",
    "zeroshot_landcover",
]

#: The dataset column of per-class fractions, in the order of the classes it records.
LABEL_COLUMN = "landcover"
#: The modality whose encoder embeds the prompts.
TEXT = "text"
#: Prompt templates; ``{}`` takes one caption word of the class.
TEMPLATES = ("{}", "a photo of {}", "a view of {}", "a landscape with {}")


def build_prompts(
    classes: Sequence[str],
    words: Mapping[str, Sequence[str]] | None = None,
    templates: Sequence[str] = TEMPLATES,
) -> dict[str, list[str]]:
    """Every template filled with every word of each class (a class without words: its name)."""
    named = class_words(classes, words)
    return {c: [t.format(w) for w in named[c] for t in templates] for c in classes}


def class_words(
    classes: Sequence[str], words: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[str]]:
    """The words each class's prompts are built from: its own, or its name when it has none."""
    words = words or {}
    return {c: list(words.get(c) or (c,)) for c in classes}


def class_embeddings(space: Any, prompts: Mapping[str, Sequence[str]]) -> torch.Tensor:
    """``[classes, dim]``: each class's prompt embeddings averaged, then unit length again."""
    return torch.stack(
        [F.normalize(space.embed(TEXT, list(p)).float().mean(0), dim=-1) for p in prompts.values()]
    )


#: How many of a text tower's training captions :func:`unlearned_words` reads at most: a word
#: none of the first million uses is as good as unlearned, and a big dataset costs no more.
CAPTIONS_READ = 1_000_000


def unlearned_words(space: Any, words: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The class words a text tower trained in this space from scratch never read as words.

    A tower trained here (the demo's CLIP stage, or any stage whose text side had no weights
    to start from) has learned only the tokens its training captions hold; a class word that is
    no word of theirs ("field" where they say "fields": a tokenizer keeps the two apart) reaches
    it as a token embedding still at its random start, and pulls its class's prompts somewhere
    else in every run (BENCHMARKS.md: zero-shot 61-77% over three seeds with seven such words,
    74-80% without). Returns class -> such words, read from the captions the space records for
    that stage (up to :data:`CAPTIONS_READ` of them, stopping once every word is found);
    empty when the tower started from weights (pretrained CLIP knows its words) or
    its captions are no longer where the space recorded them.
    """
    import re

    entry = space.entry(TEXT) if hasattr(space, "entry") and space.has(TEXT) else None
    recipe = getattr(entry, "recipe", None) or {}
    sides = [recipe.get("student") or {}, recipe.get("teacher") or {}]
    side = next((s for s in sides if s.get("modality") == TEXT), None)
    data = recipe.get("data")
    if side is None or not (side is sides[0] or side.get("train")) or side.get("weights"):
        return {}  # not trained in this space, or from weights that know their words
    if not data:
        return {}
    split = re.compile(r"[\w'-]+")
    wanted = {part for ws in words.values() for w in ws for part in split.findall(w.lower())}
    known: set[str] = set()
    read = 0
    try:  # in batches, until every word is found or CAPTIONS_READ captions are read
        for batch in open_pairs(data).to_batches(columns=[TEXT], batch_size=8192):
            for caption in batch.column(TEXT).to_pylist():
                known.update(split.findall(caption.lower()) if caption else ())
            read += batch.num_rows
            if wanted <= known or read >= CAPTIONS_READ:
                break
    except Exception:  # moved or not a dataset any more: nothing to check against
        return {}
    unseen = {
        c: [w for w in ws if not set(split.findall(w.lower())) <= known] for c, ws in words.items()
    }
    return {c: ws for c, ws in unseen.items() if ws}


def classify(embeddings: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The index of the most similar class embedding for each (unit) embedding."""
    return (embeddings.float() @ classes.float().T).argmax(dim=1)


def dominant_labels(ds: Any, rows: Sequence[int], column: str, classes: int) -> torch.Tensor | str:
    """The argmax of each row's fractions, or a note saying why the column is unusable."""
    import numpy as np
    import pyarrow as pa

    if column not in ds.schema.names:
        return f"the dataset has no {column!r} column"
    if not classes:
        return (
            f"column {column!r} names no classes: pass classes= (and words=), or record "
            f"them with geobind.data.pairs.name_classes"
        )
    kind = ds.schema.field(column).type
    if not (pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind)):
        return f"column {column!r} is {kind}, not a list of {classes} land-cover fractions"
    values = ds.take(list(rows), columns=[column]).column(column).to_pylist()
    if any(v is None or len(v) != classes for v in values):
        return f"column {column!r} does not hold {classes} fractions in every row"
    return torch.from_numpy(np.asarray(values, dtype=np.float32).argmax(axis=1))


def score(predicted: torch.Tensor, truth: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, chance (1/classes), the majority-class rate, recall per class, confusion.

    ``confusion[i][j]`` counts places of true class ``i`` predicted as ``j``. A class no place
    has as its dominant cover gets recall ``None``.
    """
    c = len(classes)
    confusion = torch.bincount(truth * c + predicted, minlength=c * c).reshape(c, c)
    support = confusion.sum(dim=1)
    n = int(support.sum())
    recall = {
        name: (float(confusion[i, i] / support[i]) if support[i] else None)
        for i, name in enumerate(classes)
    }
    return {
        "places": n,
        "accuracy": float(confusion.trace()) / n,
        "chance": 1 / c,
        "majority": float(support.max()) / n,
        "majority_class": classes[int(support.argmax())],
        "support": dict(zip(classes, support.tolist())),
        "recall": recall,
        "confusion": confusion.tolist(),
    }


def zeroshot_landcover(
    space: Any,
    dataset_uri: str,
    rows: int | Sequence[int] | None = None,
    embeddings: Mapping[str, torch.Tensor] | None = None,
    classes: Sequence[str] | None = None,
    words: Mapping[str, Sequence[str]] | None = None,
    templates: Sequence[str] = TEMPLATES,
) -> dict[str, Any]:
    """Zero-shot dominant-cover accuracy of each non-text modality of a dataset.

    ``classes`` (in the order of the ``landcover`` fractions) and ``words`` (class -> words
    naming it) default to those the dataset's ``landcover`` column records. ``embeddings``
    (from :func:`geobind.eval.embed.embed_columns`, same ``rows``) skips embedding again.
    Returns the classes, prompts, and per modality :func:`score`'s numbers; when the dataset
    has no usable ``landcover`` column or names no classes, the space has no text encoder, or
    there is nothing to classify, ``skipped`` says why and ``modalities`` is empty.
    """
    ds = open_pairs(dataset_uri)
    if classes is None:
        classes, words = label_classes(ds, LABEL_COLUMN)
    prompts = build_prompts(classes, words, templates)
    result: dict[str, Any] = {
        "classes": list(classes),
        "label_column": LABEL_COLUMN,
        "templates": list(templates),
        "prompts": prompts,
        "modalities": {},
        "skipped": None,
        "unlearned_words": {},
    }
    indices = row_indices(ds, rows)
    truth = dominant_labels(ds, indices, LABEL_COLUMN, len(classes))
    if isinstance(truth, str):
        return {**result, "skipped": f"{dataset_uri}: {truth}"}
    if TEXT not in space.modalities:
        return {
            **result,
            "skipped": f"space {getattr(space, 'path', '')} has no {TEXT!r} "
            f"encoder to embed the class prompts",
        }
    if embeddings is None:
        embeddings = embed_columns(
            space, dataset_uri, indices, only=[m for m in space.modalities if m != TEXT]
        )
    targets = {m: z for m, z in embeddings.items() if m != TEXT}
    if not targets:
        return {**result, "skipped": f"{dataset_uri}: no image or audio column the space embeds"}
    centroids = class_embeddings(space, prompts)
    result["unlearned_words"] = unlearned_words(space, class_words(classes, words))
    result["modalities"] = {
        m: score(classify(z, centroids), truth, classes) for m, z in targets.items()
    }
    return result


def unlearned_note(unlearned: Mapping[str, Sequence[str]]) -> str:
    """One line naming the class words the text tower never learned (:func:`unlearned_words`)."""
    named = "; ".join(f"{c}: {', '.join(ws)}" for c, ws in unlearned.items())
    return (
        f"warning: no training caption of the text tower uses these class words, so their "
        f"prompts carry untrained tokens ({named}); name the classes by words the captions use"
    )


def format_zeroshot(result: Mapping[str, Any]) -> str:
    """Accuracy per modality against chance and the majority class, then recall per class."""
    title = "Zero-shot land cover from text prompts"
    if result["skipped"]:
        return f"{title}: skipped ({result['skipped']})"
    mods = result["modalities"]
    first = next(iter(mods.values()))
    lines = [
        f"{title} ({len(result['classes'])} classes, {len(result['templates'])} templates "
        f"x the caption words of each; truth: each place's dominant cover, "
        f"{first['places']} places)",
        f"{'modality':12s}{'accuracy':>10s}{'chance':>10s}{'majority':>10s}",
        "-" * 42,
    ]
    lines += [
        f"{m:12s}{percent(s['accuracy']):>10s}{percent(s['chance']):>10s}"
        f"{percent(s['majority']):>10s}"
        for m, s in mods.items()
    ]
    lines.append(f"(majority: always answering {first['majority_class']!r})")
    if result.get("unlearned_words"):
        lines.append(unlearned_note(result["unlearned_words"]))
    lines += [
        "",
        "Recall per class",
        f"{'class':12s}{'places':>8s}" + "".join(f"{m:>11s}" for m in mods),
        "-" * (20 + 11 * len(mods)),
    ]
    lines += [
        f"{c:12s}{first['support'][c]:8d}"
        + "".join(f"{percent(s['recall'][c]):>11s}" for s in mods.values())
        for c in result["classes"]
    ]
    return "\n".join(lines)


def markdown_zeroshot(result: Mapping[str, Any]) -> str:
    """:func:`format_zeroshot` as Markdown, with each modality's confusion matrix."""
    if result["skipped"]:
        return f"## Zero-shot land cover\n\nSkipped: {result['skipped']}."
    mods, classes = result["modalities"], result["classes"]
    first = next(iter(mods.values()))
    text = [
        "## Zero-shot land cover",
        "",
        f"{len(classes)} classes; each class embedding averages {len(result['templates'])} "
        f"templates × the caption words of the class through the text encoder. Truth: each "
        f"place's dominant cover ({first['places']} places). Majority: always answering "
        f"`{first['majority_class']}`.",
        "",
        markdown_table(
            ["modality", "accuracy", "chance", "majority"],
            [
                [m, percent(s["accuracy"]), percent(s["chance"]), percent(s["majority"])]
                for m, s in mods.items()
            ],
        ),
    ]
    if result.get("unlearned_words"):
        text += ["", unlearned_note(result["unlearned_words"]).replace("warning:", "**Warning**:")]
    text += [
        "",
        "### Recall per class",
        "",
        markdown_table(
            ["class", "places", *mods],
            [
                [c, str(first["support"][c]), *(percent(s["recall"][c]) for s in mods.values())]
                for c in classes
            ],
        ),
    ]
    for m, s in mods.items():
        text += [
            "",
            f"### Confusion, {m} (rows: true class, columns: predicted)",
            "",
            markdown_table(
                ["", *classes], [[c, *map(str, row)] for c, row in zip(classes, s["confusion"])]
            ),
        ]
    return "\n".join(text)
