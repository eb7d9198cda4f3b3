"""The one training loop of the project, with a pluggable per-batch objective.

:class:`Trainer` owns what every method shares: data order, optimiser and schedule, AMP,
validation (clean accuracy and PGD robust accuracy on a held-out split), choice of the best
epoch, early stopping, the catastrophic-overfitting guard, an atomic checkpoint after every
epoch with exact resume, the JSONL log and the model folder. The method (one file in
``defenses/objectives/``) only turns a batch into a loss; see :mod:`defenses.objective`.

Determinism: on CPU, the same config, data and initial weights give bit-identical weights,
interrupted and resumed or not. Every random draw comes from a generator whose state is in
the checkpoint: the data order, the objective's own (random starts), and the global ones.

Several processes (``torchrun``, see :mod:`robustness.core.distributed`): the model is wrapped in
DistributedDataParallel and every rank draws the same global batches; rank ``r`` trains on
rows ``r, r + world, ...`` of each, its loss weighted by its share so that the averaged
gradient is the gradient of the global batch's mean loss (equal to the single-process run's up
to float summation order). Validation, checkpoints and the model folder are rank 0's; the
checkpoint keeps every rank's random-generator states, so a resumed run continues exactly.
"""

from __future__ import annotations

import copy
import gc
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defenses import artifacts, checkpoint
from defenses.config import TrainConfig
from defenses.objective import Objective, get_objective_class
from defenses.schedules import build_optimizer, build_scheduler, per_step
from robustness.core.data import Dataset
from robustness.core.distributed import DistContext, current
from robustness.core.errors import ConfigError, UsageError
from robustness.core.io import atomic_write_json, atomic_write_text
from robustness.core.model import ModelUnderTest

RUN_FILE = "run.json"
# The whole training set is moved to the GPU once when it is at most this large (no per-batch copies).
DEVICE_DATA_MAX_BYTES = 2 << 30


@dataclass
class TrainResult:
    """The trained model (on its device, eval mode), the per-epoch log and the final metrics."""

    model: ModelUnderTest
    log: list[dict[str, Any]]
    metrics: dict[str, Any]
    output: Path | None = None
    stopped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> nn.Module:
        return self.model.module


class Trainer:
    """Train ``module`` with ``config``.

    ``architecture`` ({factory, kwargs}) is what the model card records so that the output
    folder can be rebuilt by ``load_model(DIR)``; ``bounds``/``mean``/``std`` are the input
    range and the normalisation applied inside the model (as in :class:`ModelUnderTest`).
    ``verbose``: a progress bar on a terminal, else one plain line per epoch (to stderr);
    ``False`` prints nothing.
    """

    def __init__(
        self,
        module: nn.Module,
        config: TrainConfig,
        *,
        architecture: dict[str, Any] | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        mean: list[float] | None = None,
        std: list[float] | None = None,
        num_classes: int | None = None,
        device: str | torch.device | None = "auto",
        verbose: bool = True,
        echo: Callable[[str], None] | None = None,
        dist: DistContext | None = None,
    ) -> None:
        # The ranks of a torchrun launch (set up by the CLI with robustness.core.distributed.init_from_env);
        # a single process otherwise.
        self.dist = dist if dist is not None else current()
        self.mut = ModelUnderTest(
            module,
            spec="<training>",
            bounds=bounds,
            mean=mean,
            std=std,
            device=device,
            num_classes=num_classes,
        )
        self.config = config.resolved(self.mut.bounds)
        if self.config.amp != "off" and self.mut.device.type != "cuda":
            raise ConfigError(
                f"amp {self.config.amp} needs a CUDA device (the model is on {self.mut.device})",
                field="amp",
                fix="Use --amp off on CPU, or --device cuda.",
            )
        self.architecture = architecture or {
            "factory": f"{type(module).__module__}:{type(module).__qualname__}"
        }
        self.verbose = verbose and self.dist.is_main
        self.echo = echo or (lambda s: print(s, file=sys.stderr, flush=True))
        self.objective_class = get_objective_class(self.config.method)
        # Kept to build a distillation teacher from the same starting point.
        self._initial_state = copy.deepcopy(module.state_dict())
        self._train: Dataset | None = None
        self._val: Dataset | None = None
        self._objective: Objective | None = None
        self._output: Path | None = None
        self._resume = False
        self.card_extra: dict[str, Any] = {}

    # -- public ----------------------------------------------------------------------------
    @property
    def objective(self) -> Objective | None:
        """The method's objective of the current (or last) :meth:`fit`; None before one."""
        return self._objective

    @property
    def n_train(self) -> int:
        """The number of samples trained on (after the validation hold-out); known once :meth:`fit` runs."""
        if self._train is None:
            raise RuntimeError("n_train is known once fit() has split the data")
        return len(self._train)

    def fit(
        self,
        train: Dataset,
        *,
        val: Dataset | None = None,
        output: str | Path | None = None,
        resume: bool = False,
    ) -> TrainResult:
        """Train; with ``output``, checkpoint every epoch there and write the model folder.

        Without ``val``, ``config.val_fraction`` of ``train`` (a seeded draw) is held out.
        ``resume`` continues the run found in ``output``; without it an ``output`` that
        already holds a run is refused (:class:`UsageError`).
        """
        cfg = self.config
        self._train, self._val = self._split(train, val)
        self._output = Path(output) if output is not None else None
        self._resume = resume
        if self._train.num_classes and not self.mut.num_classes:
            self.mut.num_classes = int(self._train.num_classes)
        dist = self.dist
        # A run the method cannot do is refused before the output folder is claimed.
        self.objective_class.check_run(cfg, self.mut, len(self._train), dist.world_size)
        # Rank 0 claims the folder and reads the checkpoint; the others get its answer (or its error).
        state = dist.main_only(self._claim_output)

        dev = self.mut.device
        # The data order is the same on every rank (they split the same global batches); the
        # objective's and the global generators differ per rank so that rank shards do not share
        # random starts or dropout masks (rank 0 draws what a single process draws).
        data_gen = torch.Generator().manual_seed(cfg.seed)
        obj_gen = torch.Generator(device=dev).manual_seed(cfg.seed + 1 + _RANK_STRIDE * dist.rank)
        gens = {"data": data_gen, "objective": obj_gen}
        objective: Objective = self.objective_class(cfg, self.mut, obj_gen)
        self._objective = objective
        objective.prepare(self)
        torch.manual_seed(cfg.seed + _RANK_STRIDE * dist.rank)  # the global generator (dropout)

        net = self.mut.net
        n_batches = -(-len(self._train) // cfg.batch_size)
        base_optimizer = build_optimizer(net, cfg)
        scheduler = build_scheduler(base_optimizer, cfg, n_batches)
        # The schedule sets the learning rate of the wrapped optimiser (they share its parameter groups).
        optimizer = objective.wrap_optimizer(base_optimizer)
        scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16)
            if cfg.amp != "off"
            else nullcontext()
        )

        log: list[dict[str, Any]] = []
        start_epoch, best, bad_epochs, stopped, train_time = 0, None, 0, None, 0.0
        if state is not None:
            self.mut.module.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            self._restore_rng(state, gens)
            objective.load_state_dict(state.get("objective"))
            start_epoch, best, bad_epochs = state["epoch"], state["best"], state["bad_epochs"]
            stopped, log, train_time = state["stopped"], list(state["log"]), state["train_time_s"]
            if self.verbose and start_epoch < cfg.epochs and not stopped:
                self.echo(f"resuming {cfg.method} at epoch {start_epoch + 1}/{cfg.epochs}")

        ddp = self._wrap_ddp() if dist.enabled else None
        x_train, y_train = self._train.x, self._train.y
        # On CUDA a training set that fits moves to the GPU once; a bigger one is copied per batch
        # from pinned memory, asynchronously.
        pin = dev.type == "cuda" and not _fits_on_device(x_train)
        if dev.type == "cuda" and not pin:
            x_train, y_train = x_train.to(dev), y_train.to(dev)
        try:
            for epoch in range(start_epoch, cfg.epochs):
                if stopped:
                    break
                t0 = time.perf_counter()
                net.train()
                # Running sums stay on the device: no host synchronisation per step.
                loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
                correct = torch.zeros((), dtype=torch.int64, device=dev)
                seen = 0
                bar = self._bar(n_batches, epoch)
                for batch in objective.batches(len(y_train), cfg.batch_size, data_gen):
                    n_global = int(batch.numel())
                    if n_global == 0:
                        # Poisson sampling (a private method) can draw an empty batch; the step still
                        # happens, as the privacy accounting assumes: the optimiser adds its noise.
                        optimizer.zero_grad(set_to_none=True)
                        optimizer.step()
                        if per_step(cfg.schedule):
                            scheduler.step()
                        if bar is not None:
                            bar.update(1)
                        continue
                    idx = batch[dist.rank :: dist.world_size] if dist.enabled else batch
                    n = int(idx.numel())
                    if n == 0:
                        # Fewer samples than ranks in the last batch: this rank still joins the
                        # gradient average, with one sample at weight 0.
                        idx = batch[:1]
                    if x_train.device != idx.device:
                        idx = idx.to(x_train.device)
                    xb, yb = x_train[idx], y_train[idx]
                    if pin:
                        xb, yb = xb.pin_memory(), yb.pin_memory()
                    xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
                    with autocast, self._routed(ddp):
                        loss, logits = objective.loss(xb, yb)
                    # DDP averages gradients over ranks; weighting each rank's mean loss by its share
                    # makes that average the gradient of the global batch's mean loss.
                    train_loss = loss * (n * dist.world_size / n_global) if dist.enabled else loss
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(train_loss).backward()
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        train_loss.backward()
                        optimizer.step()
                    if per_step(cfg.schedule):
                        scheduler.step()
                    if n:
                        loss_sum += loss.detach().double() * n
                        correct += (logits.detach().argmax(dim=1) == yb).sum()
                        seen += n
                    if bar is not None:
                        bar.update(1)
                        if dev.type != "cuda":
                            bar.set_postfix(loss=f"{float(loss_sum) / max(1, seen):.4f}")
                if bar is not None:
                    bar.close()
                lr = optimizer.param_groups[0]["lr"]
                if not per_step(cfg.schedule):
                    scheduler.step()
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                epoch_time = time.perf_counter() - t0
                train_time += epoch_time
                (loss_total,) = dist.sum_floats([float(loss_sum)])
                n_correct, n_seen = dist.sum_counts([int(correct), seen])
                row = {
                    "epoch": epoch + 1,
                    "loss": loss_total / max(1, n_seen),
                    "train_accuracy": n_correct / max(1, n_seen),
                    "lr": lr,
                    **dist.main_only(lambda epoch=epoch: self._validate(epoch)),
                    **objective.epoch_end(),
                    "epoch_time_s": round(epoch_time, 4),
                    "time_s": round(train_time, 4),
                }
                log.append(row)
                score = self._score(row, objective)
                if score is not None and (best is None or score > tuple(best["score"])):
                    best = {
                        "score": list(score),
                        "epoch": epoch + 1,
                        "metrics": dict(row),
                        "state": {
                            k: v.detach().cpu().clone() for k, v in self.mut.module.state_dict().items()
                        },
                    }
                    bad_epochs = 0
                elif score is not None:
                    bad_epochs += 1
                stopped = self._stop_reason(row, best, bad_epochs, objective)
                if self.verbose:
                    self.echo(self._line(row, cfg.epochs, stopped))
                if self._output is not None:
                    # Every rank's generator states (each rank draws its own random starts).
                    rng_ranks = dist.all_gather_object(checkpoint.rng_state(gens))
                    if dist.is_main:
                        checkpoint.save(
                            self._output,
                            {
                                "model": self.mut.module.state_dict(),
                                "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict(),
                                "scaler": scaler.state_dict() if scaler is not None else None,
                                "rng": rng_ranks[0],
                                "rng_ranks": rng_ranks,
                                "world_size": dist.world_size,
                                "epoch": epoch + 1,
                                "best": best,
                                "bad_epochs": bad_epochs,
                                "stopped": stopped,
                                "log": log,
                                "train_time_s": train_time,
                                "objective": objective.state_dict(),
                            },
                        )
                        self._write_log(log)
        finally:
            objective.close()
            if ddp is not None:
                self._unwrap(ddp)
                # DDP's reducer sits in reference cycles; collect it now, while the process group
                # lives: freed at interpreter exit, after the group, it can abort the process.
                del ddp
                gc.collect()

        use_best = cfg.select_best and best is not None and not objective.keeps_last_epoch
        if use_best:
            self.mut.module.load_state_dict(best["state"])
        self.mut.net.eval()
        metrics = self._final_metrics(log, best, use_best, train_time)
        result = TrainResult(self.mut, log, metrics, self._output, stopped, extra=objective.card_fields())
        if self._output is not None:
            dist.main_only(lambda: self._write_artifacts(result, objective))
        return result

    def sub_run(self, method: str, name: str, **overrides: Any) -> ModelUnderTest:
        """Train a helper model (e.g. a distillation teacher) from the same initial weights.

        It is a run of its own in ``<output>/<name>`` (resumable), with this run's config
        except ``method`` and ``overrides``; returns the trained model in eval mode.
        """
        module = copy.deepcopy(self.mut.module)
        module.load_state_dict(self._initial_state)
        cfg = replace(self.config, method=method, schedule=None, **overrides)
        sub = Trainer(
            module,
            cfg,
            architecture=self.architecture,
            bounds=self.mut.bounds,
            mean=self.mut.mean,
            std=self.mut.std,
            num_classes=self.mut.num_classes,
            device=self.mut.device,
            verbose=self.verbose,
            echo=self.echo,
        )
        out = self._output / name if self._output is not None else None
        assert self._train is not None
        # The sub-run is resumed exactly when its parent is (a fresh parent folder has no sub-runs).
        result = sub.fit(self._train, val=self._val, output=out, resume=self._resume)
        return result.model

    # -- internals -----------------------------------------------------------------------
    def _wrap_ddp(self) -> nn.Module:
        """DistributedDataParallel around the network (gradients averaged over the ranks).

        Building it broadcasts rank 0's weights and buffers, so every rank starts identical.
        """
        import warnings

        from torch.nn.parallel import DistributedDataParallel

        # Convolutions with one input channel produce gradients whose size-1 dimension has another
        # (equivalent) stride than DDP's bucket view; DDP copies them, correctly, but warns each step.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        dev = self.mut.device
        if dev.type == "cuda":
            return DistributedDataParallel(
                self.mut.net, device_ids=[dev.index or torch.cuda.current_device()]
            )
        return DistributedDataParallel(self.mut.net)

    @contextmanager
    def _routed(self, ddp: nn.Module | None) -> Iterator[None]:
        """Within one training step, forwards that train the weights go through ``ddp``.

        The objective's inner attack runs with the weights frozen (and may stop early per rank);
        those forwards bypass DDP, so only the gradient-carrying forwards, the same number on
        every rank, take part in DDP's collective bookkeeping.
        """
        if ddp is None:
            yield
            return
        inner = self.mut.net
        self.mut.net = _TrainingForward(ddp, inner)
        try:
            yield
        finally:
            self.mut.net = inner

    def _unwrap(self, ddp: nn.Module) -> None:
        self.mut.net = ddp.module  # type: ignore[assignment]

    def _restore_rng(self, state: dict[str, Any], gens: dict[str, torch.Generator]) -> None:
        """Restore this rank's generators; a run resumed on another number of ranks re-seeds its own."""
        dist = self.dist
        ranks = state.get("rng_ranks")
        saved_world = int(state.get("world_size", 1))
        if ranks is not None and saved_world == dist.world_size:
            checkpoint.restore_rng(ranks[dist.rank], gens)
            return
        if saved_world == dist.world_size == 1:
            checkpoint.restore_rng(state["rng"], gens)
            return
        # The data order (the same on all ranks) continues exactly; each rank's random starts are
        # drawn from a fresh, seeded stream, as the split of each batch over the ranks changed.
        checkpoint.restore_rng(state["rng"], {"data": gens["data"]})
        fresh = self.config.seed + 1 + _RANK_STRIDE * dist.rank + 7919 * int(state["epoch"])
        gens["objective"].manual_seed(fresh)
        torch.manual_seed(fresh)
        if self.verbose:
            self.echo(
                f"resuming a run checkpointed on {saved_world} process(es) on {dist.world_size}: the data "
                "order continues exactly; the per-rank random streams are re-seeded"
            )

    def _split(self, train: Dataset, val: Dataset | None) -> tuple[Dataset, Dataset | None]:
        frac = self.config.val_fraction
        if val is not None or frac == 0:
            return train, val
        n = len(train)
        n_val = max(1, int(round(frac * n)))
        if n - n_val < 1:
            raise ConfigError(
                f"{n} training samples leave none after holding out {n_val} for validation",
                field="val_fraction",
                fix="Use more data or a smaller --val-fraction.",
            )
        # A generator of its own, so the split does not depend on (or shift) the training stream.
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed + 7))
        return train.subset(perm[n_val:].sort().values), train.subset(perm[:n_val].sort().values)

    def _identity(self) -> dict[str, Any]:
        assert self._train is not None
        return {
            "config": self.config.to_dict(),
            "architecture": self.architecture,
            "bounds": list(self.mut.bounds),
            "mean": self.mut.mean,
            "std": self.mut.std,
            "train": {"spec": self._train.spec, "n": len(self._train), "sha256": self._train.sha256()},
            "val": None
            if self._val is None
            else {"spec": self._val.spec, "n": len(self._val), "sha256": self._val.sha256()},
            "initial_weights_sha256": ModelUnderTest(self._initial_module(), device="cpu").sha256(),
        }

    def _check_architecture(self) -> None:
        """The model card must rebuild this module: fail before training, not when loading."""
        from robustness.core.model import build_architecture

        try:
            rebuilt = build_architecture(self.architecture)
            rebuilt.load_state_dict(self.mut.module.state_dict())
        except Exception as exc:  # noqa: BLE001 - any failure means the folder would not load
            raise UsageError(
                f"the architecture {self.architecture} does not rebuild the model being trained "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                field="architecture",
                fix="Pass architecture={'factory': 'package.module:callable', 'kwargs': {...}} naming a "
                "factory that builds this model, so that the output folder can be loaded.",
            ) from None

    def _initial_module(self) -> nn.Module:
        m = copy.deepcopy(self.mut.module).cpu()
        m.load_state_dict(self._initial_state)
        return m

    def _claim_output(self) -> dict[str, Any] | None:
        """Check the output folder against this run; returns the checkpoint to resume from."""
        if self._output is None:
            return None
        out = self._output
        ident = self._identity()
        run_file = out / RUN_FILE
        if out.exists() and not out.is_dir():
            raise UsageError(f"{out} exists and is not a folder", field="output", fix="Choose a folder path.")
        self._check_architecture()
        if run_file.exists():
            try:
                previous = json.loads(run_file.read_text())
            except json.JSONDecodeError:
                previous = None
            same = previous == json.loads(json.dumps(ident))
            if not same:
                diff = _differences(previous, json.loads(json.dumps(ident)))
                raise UsageError(
                    f"the output folder {out} holds a different run (differs in: {', '.join(diff) or 'run.json'})",
                    field="output",
                    fix="Choose another --output folder, or delete this one; --resume only continues "
                    "the same run (same model, data and options).",
                )
            if not self._resume:
                raise UsageError(
                    f"the output folder {out} already holds this run",
                    field="output",
                    fix="Pass --resume to continue it (or to rewrite its artifacts if it is complete), "
                    "or choose another --output folder.",
                )
            return checkpoint.load(out)
        if out.exists() and any(out.iterdir()):
            raise UsageError(
                f"the output folder {out} is not empty and holds no training run",
                field="output",
                fix="Choose a new or empty --output folder.",
            )
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_file, ident)
        return None

    @torch.no_grad()
    def _clean_accuracy(self, data: Dataset) -> float:
        pred = self.mut.predict(data.x, 512).cpu()
        return int((pred == data.y).sum()) / len(data)

    def _validate(self, epoch: int) -> dict[str, Any]:
        """Clean accuracy on the validation split and PGD robust accuracy on (up to val_max of) it."""
        cfg, val = self.config, self._val
        if val is None:
            return {"val_clean_accuracy": None, "val_robust_accuracy": None}
        out: dict[str, Any] = {"val_clean_accuracy": self._clean_accuracy(val), "val_robust_accuracy": None}
        if cfg.eps is not None:
            from attacks.registry import get_attack

            sub = val.subset(range(min(len(val), cfg.val_max)))
            pgd = get_attack("pgd", steps=cfg.val_steps)
            res = pgd(
                self.mut, sub.x, sub.y, eps=cfg.eps, norm=cfg.norm, seed=cfg.seed + epoch, batch_size=512
            )
            out["val_robust_accuracy"] = res.robust_accuracy
        if self._objective is not None:
            out.update(self._objective.validation(val.x, val.y, cfg.seed + epoch))
        return out

    def _score(self, row: dict[str, Any], objective: Objective) -> tuple[float, ...] | None:
        if row["val_clean_accuracy"] is None:
            return None
        if objective.selection_metric is not None and row.get(objective.selection_metric) is not None:
            return (row[objective.selection_metric], row["val_clean_accuracy"])
        if objective.adversarial and row["val_robust_accuracy"] is not None:
            return (row["val_robust_accuracy"], row["val_clean_accuracy"])
        return (row["val_clean_accuracy"],)

    def _stop_reason(
        self, row: dict[str, Any], best: dict[str, Any] | None, bad_epochs: int, objective: Objective
    ) -> str | None:
        cfg = self.config
        if best is None:
            return None
        if objective.guards_collapse and row["val_robust_accuracy"] is not None:
            best_robust = best["metrics"]["val_robust_accuracy"]
            if best_robust - row["val_robust_accuracy"] >= cfg.collapse_drop:
                return (
                    f"catastrophic overfitting: held-out PGD accuracy fell from {best_robust:.3f} "
                    f"(epoch {best['epoch']}) to {row['val_robust_accuracy']:.3f}; kept epoch {best['epoch']}"
                )
        if cfg.patience is not None and bad_epochs >= cfg.patience:
            return (
                f"early stop: no better validation score for {bad_epochs} epochs; kept epoch {best['epoch']}"
            )
        return None

    def _final_metrics(
        self, log: list[dict[str, Any]], best: dict[str, Any] | None, use_best: bool, train_time: float
    ) -> dict[str, Any]:
        cfg = self.config
        chosen = best["metrics"] if use_best else (log[-1] if log else {})
        return {
            "epochs_run": len(log),
            "selected_epoch": chosen.get("epoch"),
            "selection": "best validation score" if use_best else "last epoch",
            "val_clean_accuracy": chosen.get("val_clean_accuracy"),
            "val_robust_accuracy": chosen.get("val_robust_accuracy"),
            "val_robust_attack": None
            if cfg.eps is None
            else {"attack": "pgd", "steps": cfg.val_steps, "eps": cfg.eps, "norm": cfg.norm},
            "train_loss": chosen.get("loss"),
            "train_time_s": round(train_time, 3),
            "mean_epoch_time_s": round(train_time / max(1, len(log)), 4),
        }

    def _write_log(self, log: list[dict[str, Any]]) -> None:
        assert self._output is not None
        atomic_write_text(self._output / artifacts.LOG, "".join(json.dumps(r) + "\n" for r in log))

    def _write_artifacts(self, result: TrainResult, objective: Objective) -> None:
        out = self._output
        assert out is not None and self._train is not None
        artifacts.write_weights(out, self.mut.module)
        ident = self._identity()
        card = {
            **result.extra,
            "architecture": self.architecture,
            "bounds": list(self.mut.bounds),
            "mean": self.mut.mean,
            "std": self.mut.std,
            "num_classes": self.mut.num_classes,
            "training": {
                **objective.card(),
                "config": self.config.to_dict(),
                "stopped": result.stopped,
                "initial_weights_sha256": ident["initial_weights_sha256"],
                **self.card_extra,
            },
            "data": {"train": ident["train"], "val": ident["val"]},
            "metrics": result.metrics,
        }
        artifacts.write_card(out, card)
        self._write_log(result.log)
        artifacts.write_curve(out, result.log, f"{self.config.method} ({self.architecture.get('factory')})")

    def _bar(self, n_batches: int, epoch: int) -> Any:
        if not (self.verbose and sys.stderr.isatty()):
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=n_batches, desc=f"epoch {epoch + 1}/{self.config.epochs}", leave=False, file=sys.stderr
        )

    def _line(self, row: dict[str, Any], epochs: int, stopped: str | None) -> str:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.1f}%"

        line = (
            f"[{self.config.method}] epoch {row['epoch']}/{epochs}  loss {row['loss']:.4f}  "
            f"train {pct(row['train_accuracy'])}  val clean {pct(row['val_clean_accuracy'])}  "
            f"val robust {pct(row['val_robust_accuracy'])}  lr {row['lr']:.2e}  {row['epoch_time_s']:.1f}s"
        )
        # The method's own numbers (noisy validation accuracy, privacy spent so far).
        line += "".join(
            f"  {key.replace('_', ' ')} {value:.4g}"
            for key, value in row.items()
            if key not in _LOG_KEYS and isinstance(value, float)
        )
        return line + (f"\n  stopped: {stopped}" if stopped else "")


# The entries of every epoch's log row; a method's own entries come after them.
_LOG_KEYS = frozenset(
    {
        "epoch",
        "loss",
        "train_accuracy",
        "lr",
        "val_clean_accuracy",
        "val_robust_accuracy",
        "epoch_time_s",
        "time_s",
    }
)

# Seeds of rank r's own generators are offset by r * _RANK_STRIDE (rank 0: the single-process seeds).
_RANK_STRIDE = 1_000_003


class _TrainingForward(nn.Module):
    """The network as seen during a distributed training step (see :meth:`Trainer._routed`)."""

    def __init__(self, ddp: nn.Module, inner: nn.Module) -> None:
        super().__init__()
        self.ddp = ddp
        # A list, so that the probe is not registered as a parameter of this wrapper.
        self._probe = list(inner.parameters())[:1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and self._probe and self._probe[0].requires_grad:
            return self.ddp(x)
        return self.ddp.module(x)


def _fits_on_device(x: torch.Tensor) -> bool:
    return x.numel() * x.element_size() <= DEVICE_DATA_MAX_BYTES


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two run identities differ."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return [prefix or "run"] if a != b else []
    out: list[str] = []
    for k in sorted(set(a) | set(b)):
        out += _differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
    return out


def train(
    module: nn.Module,
    train_data: Dataset,
    config: TrainConfig,
    *,
    val_data: Dataset | None = None,
    output: str | Path | None = None,
    resume: bool = False,
    **trainer_options: Any,
) -> TrainResult:
    """One call: ``Trainer(module, config, **trainer_options).fit(train_data, ...)``."""
    return Trainer(module, config, **trainer_options).fit(
        train_data, val=val_data, output=output, resume=resume
    )
