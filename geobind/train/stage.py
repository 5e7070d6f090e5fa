"""One stage trainer: a student side learns against a teacher side on a pair dataset.

The teacher is frozen (its embeddings come from the frozen-embedding cache) except in the
demo's CLIP pre-training, where both sides train. Loss: symmetric InfoNCE with a learnable
temperature; AdamW with a linear warm-up then cosine schedule; checkpoints with exact resume;
per-step metrics in JSONL; validation Recall@k on the val split.

On a GPU every network (the frozen teacher too) lives on the device and runs under bf16
autocast: training steps, the frozen-teacher cache and validation. A stage of ``max_steps: 0``
reads no data and trains nothing: it stores its pretrained sides in the space, aligned to each
other (how CLIP's published towers enter a space).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DistributedSampler, Sampler

from geobind.config import make_config
from geobind.data.pairs import data_identity, read_inputs
from geobind.data.reader import PairDataset, pair_loader, split_rows
from geobind.encoders.encoder import Encoder, build_encoder
from geobind.encoders.weights import atomic_write, sha256_hex, state_bytes
from geobind.errors import ConfigError, GeobindError
from geobind.eval.retrieval import ranks, recall_metrics
from geobind.plugins import get_registry
from geobind.space import Space, log_records
from geobind.train.cache import teacher_embeddings
from geobind.train.checkpoint import (
    checkpoint_state,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from geobind.train.distributed import Dist
from geobind.train.loss import ContrastiveLoss
from geobind.train.recipe import SideRecipe, StageRecipe

__all__ = ["StageDiverged", "StageModel", "train_stage"]


class StageDiverged(GeobindError):
    """The loss became NaN or infinite."""


class StageModel(nn.Module):
    """What trains in a stage: the student, the teacher if it trains, and the temperature."""

    def __init__(self, student: Encoder, teacher: Encoder | None, loss: ContrastiveLoss):
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.loss = loss

    def forward(
        self,
        batch: dict[str, Any],
        teacher_z: torch.Tensor | None = None,
        bank: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        student_z = self.student(batch[self.student.name])
        if self.teacher is not None:
            teacher_z = self.teacher(batch[self.teacher.name])
        if bank is None:
            return self.loss(student_z, teacher_z)
        return self.loss(student_z, teacher_z, bank, targets)


class _Epochs(Sampler):
    """Row positions from training step ``step`` on, epoch after epoch without end: each
    epoch's whole batches as ``sampler`` deals them (a last, partial batch left out), the
    epoch ``step`` falls in from that step's batch on."""

    def __init__(
        self, sampler: DistributedSampler, steps_per_epoch: int, batch: int, step: int
    ) -> None:
        self.sampler, self.steps_per_epoch, self.batch = sampler, steps_per_epoch, batch
        self.step = step

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.step, self.steps_per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            order = list(self.sampler)
            yield from order[offset * self.batch : self.steps_per_epoch * self.batch]
            epoch, offset = epoch + 1, 0


def param_groups(
    model: nn.Module, weight_decay: float, lrs: Mapping[str, float | None] | None = None
) -> list[dict[str, Any]]:
    """Decay matrices only: no decay for biases, norms, embeddings' scalars, the temperature.

    ``lrs`` maps a top-level submodule (``"student"``, ``"teacher"``) to its own learning rate
    (``None``: the optimizer's); each gets groups of its own, the rest shares the default.
    """
    groups: dict[tuple[float | None, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = (lrs or {}).get(name.split(".", 1)[0])
        plain = p.ndim < 2 or "logit_scale" in name or name.endswith("bias")
        groups.setdefault((lr, not plain), []).append(p)
    out = []
    # the default rate's groups first, decayed then not, as before side rates existed: a
    # checkpoint's optimizer state is matched to its groups by their order
    order = sorted(groups, key=lambda k: (k[0] is not None, k[0] or 0.0, not k[1]))
    for lr, decays in order:
        params = groups[(lr, decays)]
        group: dict[str, Any] = {"params": params, "weight_decay": weight_decay if decays else 0.0}
        if lr is not None:
            group["lr"] = lr
        out.append(group)
    return out


def warmup_cosine(warmup: int, total: int) -> Any:
    """The LR factor at a step: linear warm-up to 1, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _side(side: SideRecipe, space: Space) -> Encoder:
    """Build a side's encoder.

    ``weights: space`` takes this modality's encoder from the space (its recorded config and
    verified weights); ``weights: space:OTHER`` initialises from another modality's weights in
    the space (the anchor from the CLIP image tower); anything else is a local file or None.
    """
    source, _, other = (side.weights or "").partition(":")
    if source == "space" and not other:
        if side.config:
            raise ConfigError(
                f"{side.modality}: weights 'space' take the config recorded in the "
                f"space; remove 'config' from this side"
            )
        return space.encoder(side.modality)
    weights = str(space.weights_path(other)) if source == "space" else side.weights
    return build_encoder(side.modality, side.config, weights=weights)


def known_width(side: SideRecipe, space: Space) -> int | None:
    """A side's embedding width when it is known without building it (else None)."""
    if side.weights == "space":
        return int(space.entry(side.modality).config["embed_dim"])
    if side.config.get("embed_dim") is not None:
        return int(side.config["embed_dim"])
    if side.config.get("arch"):
        return None  # the architecture decides, once the encoder is built
    modality = get_registry().modality(side.modality)
    default: Any = make_config(modality.config, where=f"modality {side.modality!r} config")
    return None if default.embed_dim is None else int(default.embed_dim)


def width_source(side: SideRecipe, space: Space) -> str:
    """Where a side's width came from, for width errors."""
    if side.weights == "space":
        return f"the space manifest {space.path / 'manifest.json'}"
    if side.config.get("embed_dim") is not None or side.config.get("arch"):
        return "the recipe"
    return f"the default config of {get_registry().owner(side.modality).distribution}"


def student_side(stage: StageRecipe, space: Space) -> SideRecipe:
    """The student to build: one whose config leaves ``embed_dim`` out takes the teacher's."""
    student = stage.student
    width = known_width(stage.teacher, space)
    if width is None or student.weights == "space" or "embed_dim" in student.config:
        return student
    return dataclasses.replace(student, config={**student.config, "embed_dim": width})


def check_widths(
    name: str, stage: StageRecipe, space: Space, student: Encoder, teacher: Encoder
) -> None:
    """A student as wide as its teacher, or an error naming the plugin, both widths and
    where each came from (raised before any data is read)."""
    if student.embed_dim == teacher.embed_dim:
        return
    raise ConfigError(
        f"stage {name!r}: student {student.name!r} (plugin {student.plugin}) has embed_dim "
        f"{student.embed_dim} (from {width_source(stage.student, space)}), but its teacher "
        f"{teacher.name!r} is {teacher.embed_dim} wide (from "
        f"{width_source(stage.teacher, space)}); leave the student's embed_dim out to follow "
        f"the teacher, or set student.config.embed_dim={teacher.embed_dim}"
    )


#: Stage settings added after spaces were first stored, with the value that behaves as before:
#: hashed only when set otherwise, so a space or checkpoint made before the key existed is still
#: recognised as the same recipe and is neither retrained nor its resume refused.
LATER_KEYS: dict[str, Any] = {"distill": 0.0, "student.lr": None, "teacher.lr": None}


def recipe_hash(stage: StageRecipe) -> str:
    """A hash of what defines a stage's result (checkpoints of another recipe are ignored).

    Its data counts by what it is, not where it lies (:func:`data_identity`): a space or a
    checkpoint moved or copied with its data to another folder is the same recipe there.
    """
    return _hash(stage, data_identity(stage.data))


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """A weights file's sha256 (cached while its size and mtime stand)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digests(stage: StageRecipe) -> dict[str, str]:
    """The sha256 of each weights file the stage starts its student or teacher from (a path,
    not ``space``): new weights under the same path (the shipped towers after ``make
    pretrain``, a checkpoint rewritten) make it another recipe, trained again, not skipped."""
    out = {}
    for side in ("student", "teacher"):
        weights = getattr(stage, side).weights
        if not weights or str(weights).split(":")[0] == "space":
            continue
        path = Path(str(weights))
        if path.is_file():
            info = path.stat()
            out[side] = _file_sha256(str(path.resolve()), info.st_size, info.st_mtime_ns)
    return out


def recipe_hashes(stage: StageRecipe) -> list[str]:
    """Every hash this stage's recipe may have been stored under: today's (first), and the one
    of spaces and checkpoints made when a stage's data counted by its path as written."""
    return [recipe_hash(stage), _hash(stage, stage.data)]


def _hash(stage: StageRecipe, data: str) -> str:
    record = dataclasses.asdict(stage)
    record["data"] = data
    digests = weights_digests(stage)
    if digests:  # only where a file is named: other stages keep the hash they were stored under
        record["weights_sha256"] = digests
    for key, old in LATER_KEYS.items():
        *path, last = key.split(".")
        part = record
        for step in path:
            part = part.get(step) or {}
        if last in part and part[last] == old:
            del part[last]
    blob = json.dumps(record, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _stage_device(device: str) -> torch.device:
    """The device a stage trains on: ``auto`` is this rank's GPU when there is one."""
    chosen = torch.device(
        "cuda"
        if device == "auto" and torch.cuda.is_available()
        else ("cpu" if device == "auto" else device)
    )
    if chosen.type == "cuda":
        if chosen.index is None:  # one GPU per torchrun process
            chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(chosen)
    return chosen


class StageRun:
    """The state of one stage while it trains."""

    def __init__(self, name: str, stage: StageRecipe, space: Space, dist: Dist) -> None:
        self.name, self.stage, self.space, self.dist = name, stage, space, dist
        # once per run, not at every checkpoint: today's hash opens the stage's dataset
        self.recipe_hashes = recipe_hashes(stage)
        self.device = _stage_device(stage.device)
        torch.manual_seed(stage.seed)
        self.student = _side(student_side(stage, space), space)
        self.teacher = _side(stage.teacher, space)
        check_widths(name, stage, space, self.student, self.teacher)
        if not stage.teacher.train:
            self.teacher.freeze()
        self.teacher_sha = sha256_hex(state_bytes(self.teacher.net))
        self.loss = ContrastiveLoss(
            stage.temperature, stage.learn_temperature, dist.rank, dist.world_size, stage.distill
        )
        self.model = StageModel(
            self.student, self.teacher if stage.teacher.train else None, self.loss
        ).to(self.device)
        self.teacher.to(self.device)  # frozen too: its cache is computed on the device
        self.local_batch = self._local_batch()
        self.data, self.steps_per_epoch, self.total = self._training_data()
        self.optimizer = torch.optim.AdamW(
            param_groups(
                self.model,
                stage.weight_decay,
                {"student": stage.student.lr, "teacher": stage.teacher.lr},
            ),
            lr=stage.lr,
            betas=cast(tuple[float, float], tuple(stage.betas)),
            eps=stage.eps,
            # torch's fused kernel: on a CPU the default steps one tensor at a time, which
            # took a third of a CLIP step (its 6.3 M-entry token table); fused is ~7x faster
            fused=self.device.type in ("cpu", "cuda"),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(stage.warmup_steps, self.total)
        )
        self.ddp = self._distributed()
        self.folder = space.path / "checkpoints" / name
        self.log_path = space.path / "logs" / f"{name}.jsonl"
        self.teacher_z: torch.Tensor | None = None
        self.bank: torch.Tensor | None = None  # a frozen teacher's negatives (``negatives: bank``)
        self.bank_index: torch.Tensor | None = None
        self.step = 0

    def _local_batch(self) -> int:
        """This process's share of the batch."""
        if self.stage.batch_size % self.dist.world_size:
            raise ConfigError(
                f"stage {self.name!r}: batch_size {self.stage.batch_size} does not "
                f"split over {self.dist.world_size} processes"
            )
        return self.stage.batch_size // self.dist.world_size

    def _training_data(self) -> tuple[PairDataset | None, int, int]:
        """The training rows, steps per epoch and steps in all (a 0-step stage reads no data)."""
        stage = self.stage
        if stage.max_steps == 0:
            return None, 0, 0
        sides = [self.student, self.teacher] if stage.teacher.train else [self.student]
        data = PairDataset(
            stage.data,
            {side.name: side.preprocess(train=True) for side in sides},
            split="train",
            inputs={side.name: side.modality.inputs for side in sides},
        )
        data.seed = stage.seed  # data workers' draws follow the batch, so resuming is exact
        self._check_columns(data.dataset.schema.names)
        steps_per_epoch = len(data) // stage.batch_size
        if steps_per_epoch == 0:
            raise ConfigError(
                f"stage {self.name!r}: {len(data)} training rows in "
                f"{stage.data} is less than one batch of {stage.batch_size} "
                f"(set batch_size={max(1, len(data))} or less)"
            )
        total = stage.epochs * steps_per_epoch
        if stage.max_steps is not None:
            total = min(total, stage.max_steps)
        if total < 1:  # only an explicit max_steps: 0 stage stores its sides untrained
            raise ConfigError(f"stage {self.name!r}: {total} steps to train; nothing stored")
        return data, steps_per_epoch, total

    def _check_columns(self, names: list[str]) -> None:
        """Every column either side reads is in the dataset, or an error naming it."""
        for side in (self.student, self.teacher):
            missing = [c for c in side.modality.input_columns if c not in names]
            if missing:
                raise ConfigError(
                    f"stage {self.name!r}: dataset {self.stage.data} has no column "
                    f"{missing[0]!r}, which modality {side.name!r} (plugin {side.plugin}) reads "
                    f"(it has: {', '.join(names)})"
                )

    def _distributed(self) -> nn.Module:
        """What a training step calls: the model, wrapped in DDP when several ranks train it."""
        if self.dist.world_size == 1 or self.total == 0:
            return self.model
        return nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
        )

    # -- set-up -------------------------------------------------------------------------
    def autocast(self) -> Any:
        """bf16 autocast on a GPU; nothing on the CPU."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16)

    def frozen_teacher_embeddings(self) -> None:
        """Fill ``teacher_z`` from the cache (rank 0 computes it; the others wait and read)."""
        if self.model.teacher is not None or self.data is None:
            return
        for turn in ("main", "others"):
            if (turn == "main") == self.dist.is_main:
                with self.autocast():
                    self.teacher_z = teacher_embeddings(
                        self.stage.data, self.teacher, self.teacher_sha, use_cache=self.stage.cache
                    )
            self.dist.barrier()
        assert self.teacher_z is not None  # every rank has read the cache by now
        self.teacher_z = self.teacher_z.to(self.device)
        if self.stage.negatives == "bank":
            self._bank_of_training_rows()

    def _bank_of_training_rows(self) -> None:
        """Every training row's frozen teacher embedding, and where each row sits in it."""
        assert self.data is not None and self.teacher_z is not None
        rows = torch.tensor(self.data.rows, device=self.device)
        self.bank = self.teacher_z[rows]
        self.bank_index = torch.full((len(self.teacher_z),), -1, device=self.device)
        self.bank_index[rows] = torch.arange(len(rows), device=self.device)

    def modules(self) -> dict[str, nn.Module]:
        """What a checkpoint stores as weights."""
        mods: dict[str, nn.Module] = {"student": self.student.net, "loss": self.loss}
        if self.model.teacher is not None:
            mods["teacher"] = self.teacher.net
        return mods

    def resume(self) -> None:
        """Continue from the newest checkpoint of this same recipe, if there is one."""
        latest = latest_checkpoint(self.folder)
        if latest is None:
            return
        # whose checkpoint it is, before its weights are loaded: another recipe's, or one
        # trained against a frozen teacher trained again since, must not be where this run
        # starts from (its weights would stand in for the student's initialisation)
        saved = checkpoint_state(latest)
        teacher = saved.get("teacher")  # none in a checkpoint of an older geobind
        if saved.get("recipe") not in self.recipe_hashes or teacher not in (None, self.teacher_sha):
            shutil.rmtree(self.folder, ignore_errors=True)  # start afresh
            return
        state = load_checkpoint(latest, self.modules(), saved)  # state.pt read once
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])

    def start_log(self) -> None:
        """Keep the log's records up to the step this run starts from: a run from step 0
        starts the log afresh, a resumed run repeats no step (rank 0)."""
        if not (self.dist.is_main and self.log_path.exists()):
            return
        kept = [r for r in log_records(self.log_path.read_text()) if r["step"] <= self.step]
        text = "".join(json.dumps(r) + "\n" for r in kept) if self.step else ""
        atomic_write(self.log_path, text.encode())

    # -- training -----------------------------------------------------------------------
    def batches(self) -> Any:
        """Training batches from the current step on, epoch after epoch, in a fixed order."""
        assert self.data is not None  # a stage with steps to train has data
        sampler: DistributedSampler = DistributedSampler(
            self.data,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=self.stage.seed,
            drop_last=True,
        )
        # one loader for every epoch left: data workers start once and keep what they have
        # read and decoded (a loader an epoch started them again each time, ~2 s apiece)
        yield from pair_loader(
            self.data,
            self.local_batch,
            sampler=_Epochs(sampler, self.steps_per_epoch, self.local_batch, self.step),
            workers=self.stage.workers,
            drop_last=True,
            seed=self.stage.seed * 100003 + self.step,
        )

    def train_step(self, batch: dict[str, Any]) -> float:
        """One optimiser step; returns the loss (averaged over ranks)."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        teacher_z = self.teacher_z[batch["row"]] if self.teacher_z is not None else None
        targets = self.bank_index[batch["row"]] if self.bank_index is not None else None
        with self.autocast():
            loss = self.ddp(batch, teacher_z, self.bank, targets)
        value = float(loss.detach())
        if not math.isfinite(value):
            last = latest_checkpoint(self.folder)
            raise StageDiverged(
                f"stage {self.name!r}: loss is {value} at step {self.step + 1}; "
                f"stopped. Last good checkpoint: {last or 'none'}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.loss.clamp()
        self.step += 1
        return self.dist.mean(value)

    def checkpoint(self) -> None:
        """Save resumable state (rank 0)."""
        if self.dist.is_main:
            save_checkpoint(
                self.folder,
                self.step,
                self.modules(),
                {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "recipe": self.recipe_hashes[0],
                    "teacher": self.teacher_sha,
                },
            )
        self.dist.barrier()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Recall@k of the student against the teacher on (up to ``val_rows``) val rows."""
        if self.data is None:
            return {}
        ds = self.data.dataset
        rows = split_rows(ds, "val")[: self.stage.val_rows]
        if len(rows) < 2:
            return {}
        with self.autocast():
            student = self.student.embed(read_inputs(ds, self.student.modality.inputs, rows))
            if self.teacher_z is not None:
                teacher = self.teacher_z[rows]
            else:
                teacher = self.teacher.embed(read_inputs(ds, self.teacher.modality.inputs, rows))
        student, teacher = student.float().cpu(), teacher.float().cpu()
        out = {}
        for direction, (q, g) in {"s2t": (student, teacher), "t2s": (teacher, student)}.items():
            m = recall_metrics(ranks(q, g), ks=(1, 10))
            out.update(
                {f"val_{direction}_{k}": v for k, v in m.items() if not k.startswith("chance")}
            )
        return out

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to the stage's metrics log (rank 0)."""
        if self.dist.is_main:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def run(self) -> dict[str, Any]:
        """Train to the last step; return the final metrics."""
        from tqdm import tqdm

        if self.total == 0:  # nothing to train: the sides are stored as they were built
            final: dict[str, Any] = {"steps": 0}
            self.start_log()
            self.log({"step": 0, "final": True, **final})
            return final
        self.frozen_teacher_embeddings()
        self.resume()
        self.start_log()
        self.model.train()
        bar = tqdm(
            total=self.total,
            initial=self.step,
            desc=self.name,
            unit="step",
            disable=not self.dist.is_main,
            mininterval=1.0,
            dynamic_ncols=True,
        )
        start, done_at_start = time.perf_counter(), self.step
        batches = self.batches()
        validated: dict[str, float] | None = None  # at the last step, if val_every hit it
        while self.step < self.total:
            value = self.train_step(next(batches))
            rate = (
                (self.step - done_at_start) * self.stage.batch_size / (time.perf_counter() - start)
            )
            record = {
                "step": self.step,
                "loss": value,
                "temperature": self.loss.temperature,
                "lr": self.scheduler.get_last_lr()[0],
                "samples_per_s": rate,
            }
            if self.stage.val_every and self.step % self.stage.val_every == 0:
                metrics = self.validate()
                validated = metrics if self.step == self.total else None
                record.update(metrics)
                self.model.train()
            self.log(record)
            bar.update(1)
            bar.set_postfix(
                loss=f"{value:.3f}", T=f"{record['temperature']:.4f}", sps=f"{rate:.0f}"
            )
            if self.step % self.stage.checkpoint_every == 0 or self.step == self.total:
                self.checkpoint()
        bar.close()
        final = {"steps": self.total, **(validated or self.validate())}
        self.log({"step": self.total, "final": True, **final})
        return final


def train_stage(
    name: str,
    stage: StageRecipe,
    space: Space,
    dist: Dist | None = None,
    recipe: dict | None = None,
) -> dict[str, Any]:
    """Train one stage and store its trained encoder(s) in the space; returns metrics."""
    dist = dist or Dist()
    run = StageRun(name, stage, space, dist)
    metrics = run.run()
    if dist.is_main:
        student_sha = sha256_hex(state_bytes(run.student.net))
        teacher_sha = (
            run.teacher_sha
            if run.model.teacher is None  # frozen: unchanged
            else sha256_hex(state_bytes(run.teacher.net))
        )
        stored = [(run.student, {"modality": run.teacher.name, "sha256": teacher_sha})]
        if run.model.teacher is not None:  # both sides trained: one commit stores both
            stored.insert(0, (run.teacher, {"modality": run.student.name, "sha256": student_sha}))
        space.put_all(stored, name, recipe, metrics)
        shutil.rmtree(run.folder, ignore_errors=True)
    dist.barrier()
    return metrics
