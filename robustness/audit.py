"""The audit runner: config in, schema-versioned results out.

For each eps (ascending) the configured attacks run in order, each only on the samples
still robust; a sample broken at a smaller eps stays broken (its adversarial example is
valid at every larger eps), so robust accuracy can never rise with eps. Each sample's
result is the worst case over the attacks. Every attack call goes through the public
contract (``get_attack(name, **params)(model, x, y, eps=..., norm=..., seed=...)``), one
batch at a time, with a seed derived from (seed, eps index, stage, batch index), and
each finished batch is checkpointed: an interrupted audit resumes where it stopped and
ends with the same numbers.

The sanity checks (``robustness.checks``) use real measurements: the model checks run
first; the attack checks run real attacks (FGSM, random noise, Square, a stronger version
of the main gradient attack, the same attacks at larger eps, the main attack at a very
large eps). Adversarial examples a check attack finds are real: they are folded into the
per-sample worst case (``broken_by: "check:..."``), so the reported robust accuracy is
never higher than what any attack of the run found.

Under ``torchrun`` (see :mod:`robustness.core.distributed`) the batches of each stage are shared out
(rank ``r`` runs batches ``r, r + world, ...``, each with its own position-derived seed) and every
rank gathers all outcomes before the next stage, so every rank follows the same path and the
numbers equal a single process's. Rank 0 alone reads and writes the checkpoint's shared records
and the outputs; each rank checkpoints the batches it ran, so a rerun resumes on every rank.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from robustness import __version__
from robustness.checkpoint import Checkpoint, derive_seed
from robustness.config import (
    EOT_SAMPLES_THOROUGH,
    AttackSpec,
    AuditConfig,
    apply_overrides,
    check_config,
    check_inputs,
    default_large_eps,
    load_config,
)
from robustness.core.data import check_labels_fit_model
from robustness.core.distributed import DistContext, current
from robustness.core.runlock import RunLock
from robustness.core.threads import apply_threads, batch_pass_probe
from robustness.progress import Progress, choose_mode

if TYPE_CHECKING:
    from robustness.core.schema import AuditResults

# Budgets of the attacks the checks add (per sample).
CHECK_SQUARE = {"n_queries": 1000}
STRONGER_STEPS = 2  # (e): twice the iterations ...
STRONGER_EXTRA_RESTARTS = 2  # ... and two more restarts


def run_audit(config_or_path: Any, **overrides: Any) -> dict[str, Any]:
    """Run an audit; return the results dict (also written to the output folder).

    ``config_or_path``: a YAML/TOML path, a dict or an :class:`AuditConfig`. Overrides (CLI
    flags): ``model`` (a spec, or a ``ModelUnderTest``/``nn.Module`` object), ``weights``,
    ``data`` (a spec or a ``Dataset``), ``n_examples``, ``eps``, ``norm``, ``preset`` or
    ``attacks``, ``device``, ``seed``, ``batch_size``, ``output_dir``, ``formats``; and
    ``restart`` (discard a checkpoint), ``progress`` ('auto'|'on'|'off'), ``quiet``,
    ``command_line`` (recorded in the results).
    """
    restart = bool(overrides.pop("restart", False))
    progress = overrides.pop("progress", "off")
    quiet = bool(overrides.pop("quiet", False))
    cmd = overrides.pop("command_line", None)
    model_obj = overrides.get("model")
    data_obj = overrides.get("data")
    if model_obj is not None and not isinstance(model_obj, str):
        overrides["model"] = getattr(model_obj, "spec", None) or f"<{type(model_obj).__name__}>"
    else:
        model_obj = None
    if data_obj is not None and not isinstance(data_obj, str):
        overrides["data"] = getattr(data_obj, "spec", None) or "<tensors>"
    else:
        data_obj = None
    if isinstance(config_or_path, dict):
        config_or_path = _with_placeholders(config_or_path, overrides)
    cfg = apply_overrides(load_config(config_or_path), **overrides)
    dist = current()
    if not dist.is_main:  # one rank reports
        progress, quiet = "off", True
    mode = (
        progress
        if isinstance(progress, str) and progress in ("live", "plain")
        else choose_mode(progress, quiet)
    )
    runner = AuditRunner(
        cfg,
        model=model_obj,
        data=data_obj,
        restart=restart,
        progress=Progress(mode),
        command_line=cmd or "python: robustness.audit.run_audit(...)",
        quiet=quiet,
    )
    return runner.run()


def _with_placeholders(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Let a dict config omit model/data specs that the overrides supply."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in cfg.items()}
    for section in ("model", "data"):
        if overrides.get(section) is not None:
            cfg.setdefault(section, {})
            cfg[section].setdefault("spec", overrides[section])
    return cfg


@dataclass
class StageOutcome:
    """One attack at one eps over a set of samples (``idx``), all batches together."""

    idx: torch.Tensor
    success: torch.Tensor
    adv_pred: torch.Tensor
    pnorm: torch.Tensor
    x_succ: torch.Tensor  # adversarial examples of idx[success], in that order
    n_forward: int
    n_backward: int
    n_queries: int
    time_s: float
    resumed: bool

    @property
    def broken(self) -> torch.Tensor:
        return self.idx[self.success]

    def cost(self) -> dict[str, Any]:
        return {
            "time_s": round(self.time_s, 4),
            "n_forward": self.n_forward,
            "n_backward": self.n_backward,
            "n_queries": self.n_queries,
            "n_attacked": int(self.idx.numel()),
            "n_broken": int(self.success.sum()),
        }


class AuditRunner:
    """Runs one audit; :meth:`run` returns the results dict and writes the outputs."""

    def __init__(
        self,
        cfg: AuditConfig,
        *,
        model: Any = None,
        data: Any = None,
        restart: bool = False,
        progress: Progress | None = None,
        command_line: str = "",
        quiet: bool = False,
        dist: DistContext | None = None,
    ) -> None:
        self.dist = dist if dist is not None else current()
        self.cfg = cfg
        self.quiet = quiet
        self._model_obj = model
        self._data_obj = data
        self.restart = restart
        self.progress = progress or Progress("off")
        self.command_line = command_line
        self.check_time = 0.0

    # -- setup -----------------------------------------------------------------------------
    def _load_model(self) -> Any:
        from robustness.core.model import load_model

        m = self.cfg.model
        # A model object passed to run_audit (ModelUnderTest or nn.Module) replaces the spec;
        # load_model returns a ModelUnderTest as is and wraps a module with the config's options.
        return load_model(
            self._model_obj if self._model_obj is not None else m.spec,
            weights=m.weights if self._model_obj is None else None,
            trust_model=m.trust_model,
            bounds=m.bounds,
            mean=m.mean,
            std=m.std,
            device=m.device,
            precision=m.precision,
            channels_last=m.channels_last,
            compile=m.compile,
        )

    def _load_data(self, mut: Any) -> Any:
        from robustness.core.data import load_data

        d = self.cfg.data
        spec = self._data_obj if self._data_obj is not None else d.spec
        return load_data(
            spec,
            n_examples=d.n_examples,
            seed=self.cfg.data_seed,
            bounds=mut.bounds,
            model_outputs=mut.num_classes,
        )

    def _fingerprint_parts(self, attacks: list[AttackSpec], mut: Any, data: Any) -> dict[str, Any]:
        c = self.cfg
        sc = c.sanity_checks
        return {
            "tool": __version__,
            "model_options": c.model.model_dump(mode="json"),
            "data_options": {**c.data.model_dump(mode="json"), "seed": c.data_seed},
            "threat": c.threat.model_dump(mode="json"),
            "attacks": [a.model_dump(mode="json") for a in attacks],
            "sanity_checks": {
                "enabled": sc.enabled,
                "sample_size": sc.sample_size,
                "tolerance": sc.tolerance,
                "large_eps": sc.large_eps,
            },
            "seed": c.seed,
            "model": mut.sha256(),
            "data": data.sha256(),
        }

    def _set_threads(self, mut: Any, data: Any) -> None:
        """The CPU thread count (config ``threads``); under torchrun ``auto`` keeps each rank's share."""
        setting = self.cfg.threads
        if setting == "auto" and (self.dist.world_size > 1 or mut.device.type != "cpu"):
            return
        apply_threads(setting, batch_pass_probe(mut, data.x, self.cfg.data.batch_size))

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run the audit holding the output folder's lock, released on every exit path.

        The lock is taken before anything in the folder changes (``--restart`` deletes the
        checkpoint): a second audit there stops, naming the live one. Under torchrun rank 0
        holds it for all ranks, and its refusal is raised on every rank.
        """
        lock = RunLock(self.cfg.output.dir, command=self.command_line, restart=self.restart, quiet=self.quiet)
        self.dist.main_only(lock.acquire)
        try:
            return self._run()
        finally:
            lock.release()  # a no-op on the ranks that do not hold it

    def _run(self) -> dict[str, Any]:
        t_start = time.perf_counter()
        cfg = self.cfg
        attacks = check_config(cfg)
        # The same start-up checks as 'robustness validate', before any model loads or trains.
        check_inputs(cfg, model=self._model_obj is None, data=self._data_obj is None)
        mut = self._load_model()
        data = self._load_data(mut)
        mut.validate(data.x)
        # A model with too few outputs for the labels is the model's problem (ModelError).
        check_labels_fit_model(int(data.y.max()), int(mut.num_classes))
        self._set_threads(mut, data)
        self.mut, self.data = mut, data
        self.x = data.x.detach().cpu().float()
        self.y = data.y.detach().cpu().long()
        self.N = int(self.x.shape[0])
        self.norm = cfg.threat.norm
        self.bs = cfg.data.batch_size
        outdir = Path(cfg.output.dir)
        self.ckpt = Checkpoint(outdir, self._fingerprint_parts(attacks, mut, data))
        dist = self.dist
        state = dist.main_only(lambda: self.ckpt.open(restart=self.restart))
        self.ckpt.folder.mkdir(parents=True, exist_ok=True)  # ranks on other nodes keep their batches
        if state == "resumed" and not self.quiet:
            print(
                f"robustness: resuming the unfinished audit in {outdir} (same config, model and data)",
                file=sys.stderr,
            )

        # Clean predictions (checkpointed: a resumed run must start from the same ones).
        t0 = time.perf_counter()

        def clean_predictions() -> torch.Tensor:
            rec = self.ckpt.load_json("clean")
            if isinstance(rec, dict) and isinstance(rec.get("pred"), list) and len(rec["pred"]) == self.N:
                return torch.tensor(rec["pred"], dtype=torch.long)
            pred = mut.predict(self.x, self.bs).cpu()
            self.ckpt.save_json("clean", {"pred": pred.tolist()})
            return pred

        # Rank 0's predictions everywhere: every rank must attack the same set of samples.
        clean_pred = dist.main_only(clean_predictions)
        self.clean_pred = clean_pred
        from robustness.core.metrics import classification_metrics

        clean = classification_metrics(self.y.numpy(), clean_pred.numpy(), int(mut.num_classes))
        clean["ci"] = clean["accuracy_ci"]
        clean_s = time.perf_counter() - t0
        correct = clean_pred == self.y

        # Model checks first: their outcome decides whether attacks need EOT.
        t0 = time.perf_counter()
        model_checks, randomized = dist.main_only(lambda: self._model_checks(correct))
        eot_used = False
        if randomized and cfg.attacks == "thorough":
            attacks, eot_used = self._with_eot(attacks)
            from robustness import checks as C

            model_checks["deterministic_forward"] = dist.main_only(
                lambda: C.deterministic_forward(mut, self._model_sample(correct), eot_used=eot_used)
            )
        self.check_time += time.perf_counter() - t0
        self.attack_specs = attacks
        self._instances = {}
        labels = _unique_labels(attacks)
        self.labels = labels

        # The eps loop.
        eps_grid = list(cfg.threat.eps)
        E = len(eps_grid)
        alive = correct.clone()
        broken_by: list[list[str | None]] = [[None] * self.N for _ in range(E)]
        pnorm = torch.zeros(E, self.N)
        x_best = self.x.clone()
        adv_pred_best = clean_pred.clone()
        first_broken = torch.full((self.N,), -1, dtype=torch.long)
        robust_masks: list[torch.Tensor] = []
        entries: list[dict[str, Any]] = []
        meas: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "d": [], "e": []}
        main = self._main_attack(attacks)
        self.spec_by_label: dict[str, AttackSpec] = dict(zip(labels, attacks))
        attack_time = 0.0

        for j, e in enumerate(eps_grid):
            start_alive = alive.clone()
            if j > 0:
                carried = (correct & ~start_alive).nonzero().flatten().tolist()
                for i in carried:
                    broken_by[j][i] = broken_by[j - 1][i]
                pnorm[j] = pnorm[j - 1]
            per_attack: dict[str, float] = {}
            per_cost: dict[str, dict[str, Any]] = {}
            t_eps = 0.0
            wb_broken = 0
            bb_tested: int | None = None
            bb_by: dict[str, int] = {}
            for k, (spec, label) in enumerate(zip(attacks, labels)):
                kind = self._instance(spec).kind
                if kind != "white-box" and bb_tested is None:
                    bb_tested = int(alive.sum())
                out = self._stage(j, e, f"a{k}-{spec.name}", label, spec, alive.nonzero().flatten(), alive)
                self._fold(out, j, label, alive, broken_by, pnorm, x_best, adv_pred_best, first_broken)
                per_attack[label] = int(alive.sum()) / self.N
                per_cost[label] = out.cost()
                t_eps += out.time_s
                if kind == "white-box":
                    wb_broken += int(out.success.sum())
                else:
                    bb_by[label] = int(out.success.sum())
            attack_time += t_eps
            n_attacks_only = int(alive.sum())

            # Attack checks at this eps; what they break is folded in.
            found: dict[str, int] = {}
            if cfg.sanity_checks.enabled:
                t0 = time.perf_counter()
                self._checks_at_eps(
                    j,
                    e,
                    start_alive,
                    alive,
                    correct,
                    wb_broken,
                    bb_tested,
                    bb_by,
                    main,
                    meas,
                    found,
                    broken_by,
                    pnorm,
                    x_best,
                    adv_pred_best,
                    first_broken,
                )
                self.check_time += time.perf_counter() - t0

            robust_masks.append(alive.clone())
            k_rob = int(alive.sum())
            from robustness.core.metrics import clopper_pearson

            entries.append(
                {
                    "eps": e,
                    "norm": self.norm,
                    "n": self.N,
                    "n_robust": k_rob,
                    "accuracy": k_rob / self.N,
                    "ci": list(clopper_pearson(k_rob, self.N)),
                    "per_attack": per_attack,
                    "per_attack_cost": per_cost,
                    "per_class_accuracy": _per_class(alive, self.y, int(mut.num_classes)),
                    "time_s": round(t_eps, 4),
                    "accuracy_attacks_only": n_attacks_only / self.N,
                    "found_by_checks": found,
                }
            )

        # (c) and the verdict.
        checks_list = self._judge_checks(model_checks, meas, entries, eps_grid, main, correct)
        wm = dist.main_only(lambda: self._watermark(mut, data))
        from robustness.core.verdict import verdict
        from robustness.gates import evaluate_gates

        attack_records = [
            {
                "name": label,
                "attack": spec.name,
                "params": _jsonable(self._instance(spec).params),
                "kind": self._instance(spec).kind,
            }
            for spec, label in zip(attacks, labels)
        ]
        # The baseline's budget is compared with what really ran (EOT may have wrapped attacks).
        gates = evaluate_gates(cfg, clean, entries, data.sha256(), watermark=wm, attacks=attack_records)
        v, reason = verdict(checks_list, gates)
        total_s = time.perf_counter() - t_start

        from robustness.results import (
            EXAMPLES_FILE,
            SAMPLES_FILE,
            SCHEMA_VERSION,
            environment,
            now_iso,
            typed_results,
        )

        results: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "tool_version": __version__,
            "created": now_iso(),
            "config": cfg.model_dump(mode="json"),
            "environment": {
                **environment(str(mut.device), cfg.seed, self.command_line, mut.precision),
                "channels_last": mut.channels_last,
                "compiled": mut.compiled,
                "processes": dist.describe(),
            },
            "model": {
                "spec": mut.spec,
                "sha256": mut.sha256(),
                "n_parameters": mut.n_parameters,
                "bounds": list(mut.bounds),
                "num_classes": int(mut.num_classes),
                "outputs_probabilities": bool(mut.outputs_probabilities),
                "mean": mut.mean,
                "std": mut.std,
            },
            "data": {
                "spec": data.spec,
                "n": self.N,
                "sha256": data.sha256(),
                "shape": list(self.x.shape[1:]),
                "seed": cfg.data_seed,
                "n_examples": cfg.data.n_examples,
            },
            "threat": {"norm": self.norm, "eps": eps_grid, "bounds": list(mut.bounds)},
            "clean": clean,
            "attacks": attack_records,
            "robust": entries,
            "sanity_checks": checks_list,
            "gates": gates,
            "verdict": v,
            "verdict_reason": reason,
            "timing": {
                "total_s": round(total_s, 3),
                "clean_s": round(clean_s, 4),
                "attacks_s": round(attack_time, 3),
                "checks_s": round(self.check_time, 3),
                "resumed_batches": dist.sum_counts([self.ckpt.n_loaded])[0],
                "note": "attack and check times include work done before a resume",
            },
            "files": {"samples": SAMPLES_FILE, "examples": EXAMPLES_FILE},
            "watermark": wm,
            "eot_used": eot_used,
        }
        # The one typed result: results.json and every report are written from it.
        result = typed_results(results)
        if dist.is_main:
            self._write(outdir, result, robust_masks, broken_by, pnorm, x_best, adv_pred_best, first_broken)
            self.ckpt.mark_complete()
        # No rank returns (and exits) before the outputs exist.
        dist.barrier()
        self.progress.close()
        return result.to_dict()

    def _watermark(self, mut: Any, data: Any) -> dict[str, Any] | None:
        """The ``watermark`` results key: ownership test plus survival table (issue: config ``watermark``)."""
        w = self.cfg.watermark
        if w is None:
            return None
        from robustness.core.data import load_data
        from robustness.watermark.section import watermark_section

        attack_data = (
            load_data(w.attack_data, bounds=mut.bounds, num_classes=mut.num_classes)
            if w.attack_data
            else None
        )
        self.progress.message("watermark: verifying the key and testing survival")
        return watermark_section(
            mut,
            w.key,
            data,
            alpha=w.alpha,
            surrogates=w.surrogates,
            reference_models=w.reference_models,
            attack_data=attack_data,
            seed=w.seed,
        )

    # -- stages ----------------------------------------------------------------------------
    def _instance(self, spec: AttackSpec) -> Any:
        from attacks.registry import get_attack

        key = (spec.name, repr(sorted(spec.params.items())))
        if key not in self._instances:
            self._instances[key] = get_attack(spec.name, **spec.params)
        return self._instances[key]

    def _stage(
        self,
        j: int,
        eps: float,
        key: str,
        label: str,
        spec: AttackSpec,
        idx: torch.Tensor,
        alive: torch.Tensor,
        show_robust: bool = True,
    ) -> StageOutcome:
        """Run (or load from the checkpoint) one attack on the samples ``idx``, batch by batch."""
        idx = idx.to(torch.long).sort().values
        batches = [idx[s : s + self.bs] for s in range(0, idx.numel(), self.bs)]
        n_alive = int(alive.sum())
        self.progress.stage_start(eps, label, idx.numel(), len(batches), n_alive, self.N)
        succ, preds, norms, xs = [], [], [], []
        cost = np.zeros(3, dtype=np.int64)
        t_total = 0.0
        resumed = bool(batches)
        broken_so_far = 0
        records: dict[int, dict[str, np.ndarray]] = {}
        ran = False
        live_broken = 0
        for b, bidx in enumerate(batches):
            if not self.dist.owns(b):
                continue  # another rank's batch
            rec = self.ckpt.load_batch(j, key, b, sample_shape=tuple(self.x.shape[1:]))
            if rec is not None and not np.array_equal(rec["idx"], bidx.numpy()):
                rec = None  # out of step with this run (cannot happen with a deterministic model): redo
            if rec is None:
                ran = True
                rec = self._attack_batch(spec, bidx, eps, derive_seed(self.cfg.seed, j, key, b))
                self.ckpt.save_batch(j, key, b, rec)
            records[b] = rec
            if not self.dist.enabled:
                live_broken += int((torch.from_numpy(rec["success"]).bool() & alive[bidx]).sum())
                self.progress.batch_done(n_alive - live_broken)
        if self.dist.enabled:
            # Everyone's batches, so that every rank folds the same outcomes (and picks the same
            # samples for the next stage).
            gathered = self.dist.all_gather_object((records, ran))
            records = {b: r for part, _ in gathered for b, r in part.items()}
            ran = any(r for _, r in gathered)
        resumed = resumed and not ran
        for b, bidx in enumerate(batches):
            rec = records[b]
            s = torch.from_numpy(rec["success"]).bool()
            succ.append(s)
            preds.append(torch.from_numpy(rec["adv_pred"]).long())
            norms.append(torch.from_numpy(rec["pnorm"]).float())
            xs.append(torch.from_numpy(rec["x_adv"]).float())
            cost += rec["cost"].astype(np.int64)
            t_total += float(rec["time_s"])
            broken_so_far += int((s & alive[bidx]).sum())
            if self.dist.enabled:
                self.progress.batch_done(n_alive - broken_so_far)
        empty = torch.zeros(0)
        out = StageOutcome(
            idx=idx,
            success=torch.cat(succ) if succ else torch.zeros(0, dtype=torch.bool),
            adv_pred=torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long),
            pnorm=torch.cat(norms) if norms else empty,
            x_succ=torch.cat(xs) if xs else self.x[:0].clone(),
            n_forward=int(cost[0]),
            n_backward=int(cost[1]),
            n_queries=int(cost[2]),
            time_s=t_total,
            resumed=resumed,
        )
        n_robust = n_alive - broken_so_far if show_robust else None
        self.progress.stage_done(
            eps, label, int(idx.numel()), int(out.success.sum()), n_robust, self.N, t_total, resumed
        )
        return out

    def _attack_batch(
        self, spec: AttackSpec, bidx: torch.Tensor, eps: float, seed: int
    ) -> dict[str, np.ndarray]:
        attack = self._instance(spec)
        t0 = time.perf_counter()
        xb, yb = self.x[bidx], self.y[bidx]
        if self.mut.device.type == "cuda":
            # Page-locked host memory: a direct DMA copy that does not block the host.
            xb = xb.pin_memory().to(self.mut.device, non_blocking=True)
            yb = yb.pin_memory().to(self.mut.device, non_blocking=True)
        res = attack(
            self.mut,
            xb,
            yb,
            eps=float(eps),
            norm=self.norm,
            seed=seed,
            batch_size=self.bs,
        )
        if self.mut.device.type == "cuda":
            torch.cuda.synchronize(self.mut.device)
        elapsed = time.perf_counter() - t0
        success = res.success.detach().cpu().bool()
        x_adv = res.x_adv.detach().cpu().float()
        return {
            "idx": bidx.numpy().astype(np.int64),
            "success": success.numpy(),
            "adv_pred": res.adv_pred.detach().cpu().long().numpy(),
            "pnorm": res.perturbation_norm.detach().cpu().float().numpy(),
            "x_adv": x_adv[success].numpy(),
            "cost": np.array([res.n_forward, res.n_backward, res.n_queries], dtype=np.int64),
            "time_s": np.array(elapsed, dtype=np.float64),
        }

    def _fold(
        self,
        out: StageOutcome,
        j: int,
        label: str,
        alive: torch.Tensor,
        broken_by: list[list[str | None]],
        pnorm: torch.Tensor,
        x_best: torch.Tensor,
        adv_pred_best: torch.Tensor,
        first_broken: torch.Tensor,
    ) -> int:
        """Mark what ``out`` broke among the ``alive`` samples as broken at eps ``j``; returns how many."""
        if out.idx.numel() == 0:
            return 0
        succ_idx = out.broken
        new = alive[succ_idx]
        rows = succ_idx[new]
        if rows.numel() == 0:
            return 0
        alive[rows] = False
        x_best[rows] = out.x_succ[new]
        adv_pred_best[rows] = out.adv_pred[out.success][new]
        first_broken[rows] = j
        pn = out.pnorm[out.success][new]
        pnorm[j, rows] = pn
        for i in rows.tolist():
            broken_by[j][i] = label
        return int(rows.numel())

    # -- checks ----------------------------------------------------------------------------
    def _model_sample(self, correct: torch.Tensor) -> torch.Tensor:
        return self.x[self._sample(correct if correct.any() else torch.ones_like(correct), "model")]

    def _sample(self, mask: torch.Tensor, tag: Any, k: int | None = None) -> torch.Tensor:
        """Up to ``k`` (sample_size) indices of ``mask``, drawn reproducibly for ``tag``."""
        k = k or self.cfg.sanity_checks.sample_size
        idx = mask.nonzero().flatten()
        if idx.numel() <= k:
            return idx
        g = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "sample", tag))
        return idx[torch.randperm(idx.numel(), generator=g)[:k]].sort().values

    def _model_checks(self, correct: torch.Tensor) -> tuple[dict[str, Any], bool]:
        from robustness import checks as C
        from robustness.core.threat import clip_to_ball_and_bounds, random_in_ball

        mut = self.mut
        sel = self._sample(correct if correct.any() else torch.ones_like(correct), "model")
        xs, ys = self.x[sel], self.y[sel]
        g = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "near"))
        e0 = float(min(self.cfg.threat.eps))
        near = clip_to_ball_and_bounds(
            xs + random_in_ball(xs, self.norm, e0, g), xs, self.norm, e0, mut.bounds
        )
        det = C.deterministic_forward(mut, xs.to(mut.device), eot_used=False)
        out = {
            "outputs_logits": C.outputs_logits(mut),
            "deterministic_forward": det,
            "gradients_nonzero": C.gradients_nonzero(mut, xs, ys, near),
        }
        return out, bool(det.measured.get("randomized"))

    def _with_eot(self, attacks: list[AttackSpec]) -> tuple[list[AttackSpec], bool]:
        """Gradient attacks with expectation over transformations (for a randomized model)."""
        from attacks.registry import available

        known = available()
        out, any_wrapped = [], False
        for spec in attacks:
            inst = self._instance_raw(spec)
            if inst.kind != "white-box":
                out.append(spec)
                continue
            if "eot_iter" in inst.params:
                out.append(
                    AttackSpec(name=spec.name, params={**spec.params, "eot_iter": EOT_SAMPLES_THOROUGH})
                )
                any_wrapped = True
                continue
            wrapper = known.get("eot")
            keys = set(wrapper.defaults()) if wrapper else set()
            inner = next((k for k in ("attack", "inner") if k in keys), None)
            inner_params = next((k for k in ("attack_params", "inner_params", "params") if k in keys), None)
            samples = next((k for k in ("eot_samples", "samples") if k in keys), None)
            if inner and inner_params and samples:
                out.append(
                    AttackSpec(
                        name="eot",
                        params={
                            inner: spec.name,
                            inner_params: dict(spec.params),
                            samples: EOT_SAMPLES_THOROUGH,
                        },
                    )
                )
                any_wrapped = True
            else:
                out.append(spec)
        return out, any_wrapped

    def _instance_raw(self, spec: AttackSpec) -> Any:
        from attacks.registry import get_attack

        return get_attack(spec.name, **spec.params)

    def _main_attack(self, attacks: list[AttackSpec]) -> AttackSpec | None:
        """The first iterative white-box attack (it has a ``steps`` parameter)."""
        for spec in attacks:
            inst = self._instance(spec)
            if inst.kind == "white-box" and "steps" in inst.params and int(inst.params["steps"]) > 1:
                return spec
        return None

    def _stronger(self, spec: AttackSpec) -> AttackSpec:
        inst = self._instance(spec)
        params = dict(spec.params)
        params["steps"] = int(inst.params["steps"]) * STRONGER_STEPS
        if "restarts" in inst.params:
            params["restarts"] = int(inst.params["restarts"]) + STRONGER_EXTRA_RESTARTS
        return AttackSpec(name=spec.name, params=params)

    def _checks_at_eps(
        self,
        j: int,
        e: float,
        start_alive: torch.Tensor,
        alive: torch.Tensor,
        correct: torch.Tensor,
        wb_broken: int,
        bb_tested: int | None,
        bb_by: dict[str, int],
        main: AttackSpec | None,
        meas: dict[str, list[dict[str, Any]]],
        found: dict[str, int],
        *state: Any,
    ) -> None:
        from attacks.registry import available

        known = available()

        # (a) FGSM on every sample attacked at this eps.
        idx = start_alive.nonzero().flatten()
        fgsm = AttackSpec(name="fgsm", params={})
        n_att = int(idx.numel())
        has_iterative = main is not None
        out = self._stage(j, e, "check-a-fgsm", "check (a) fgsm", fgsm, idx, alive)
        self.spec_by_label["check:fgsm"] = fgsm
        extra = self._fold(out, j, "check:fgsm", alive, *state)
        if extra:
            found["fgsm"] = extra
        # Survivors of the white-box attacks among the samples attacked at this eps.
        meas["a"].append(
            {
                "eps": e,
                "n_attacked": n_att,
                "fgsm_robust": n_att - int(out.success.sum()),
                "iterative_robust": (n_att - wb_broken) if has_iterative else None,
                "extra": extra,
            }
        )

        # (d) random noise (and Square if no black-box attack ran) on still-robust samples.
        sel = self._sample(alive, ("d", j))
        by: dict[str, int] = dict(bb_by)
        tested = bb_tested if bb_tested is not None else 0
        extra_specs = []
        if "noise" in known:
            extra_specs.append(("noise", AttackSpec(name="noise", params={})))
        if bb_tested is None and "square" in known and self.norm in known["square"].norms:
            extra_specs.append(("square", AttackSpec(name="square", params=dict(CHECK_SQUARE))))
        if extra_specs:
            tested = max(tested, int(sel.numel()))
        for short, spec in extra_specs:
            cur = sel[alive[sel]]
            out = self._stage(j, e, f"check-d-{short}", f"check (d) {short}", spec, cur, alive)
            self.spec_by_label[f"check:{short}"] = spec
            k = self._fold(out, j, f"check:{short}", alive, *state)
            by[short] = k
            if k:
                found[short] = k
        meas["d"].append({"eps": e, "n_tested": tested, "n_broken": sum(by.values()), "by": by})

        # (e) the main gradient attack, twice the iterations and more restarts, on still-robust samples.
        if main is not None:
            strong = self._stronger(main)
            sel = self._sample(alive, ("e", j))
            out = self._stage(j, e, "check-e-stronger", f"check (e) {main.name} x2", strong, sel, alive)
            label = f"check:{main.name}-stronger"
            self.spec_by_label[label] = strong
            k = self._fold(out, j, label, alive, *state)
            if k:
                found[f"{main.name}-stronger"] = k
            meas["e"].append({"eps": e, "n_tested": int(sel.numel()), "n_broken": k})

        # (b) samples broken at a smaller eps, attacked again here by the attack that broke them.
        if j > 0:
            broken_by = state[0]
            carried = correct & ~start_alive
            sel = self._sample(carried, ("b", j))
            groups: dict[str, list[int]] = {}
            for i in sel.tolist():
                groups.setdefault(broken_by[j - 1][i] or "", []).append(i)
            n_tested = n_not = 0
            for label, members in sorted(groups.items()):
                spec = self.spec_by_label.get(label)
                if spec is None:
                    continue
                gidx = torch.tensor(members, dtype=torch.long)
                tmp_alive = torch.zeros_like(alive)
                tmp_alive[gidx] = True
                out = self._stage(
                    j, e, f"check-b-{label}", f"check (b) {label}", spec, gidx, tmp_alive, show_robust=False
                )
                n_tested += int(gidx.numel())
                n_not += int((~out.success).sum())
            meas["b"].append({"eps": e, "n_tested": n_tested, "n_not_broken": n_not})

    def _judge_checks(
        self,
        model_checks: dict[str, Any],
        meas: dict[str, list[dict[str, Any]]],
        entries: list[dict[str, Any]],
        eps_grid: list[float],
        main: AttackSpec | None,
        correct: torch.Tensor,
    ) -> list[dict[str, Any]]:
        from robustness import checks as C

        sc = self.cfg.sanity_checks
        tol = sc.tolerance
        if not sc.enabled:
            reason = (sc.reason or "").strip()
            out = []
            for check in model_checks.values():
                out.append(check.as_dict(waiver=reason))
            for name in (
                "iterative_beats_single_step",
                "monotonic_in_eps",
                "large_eps_breaks_all",
                "black_box_not_stronger",
                "more_iterations_no_gain",
            ):
                out.append(
                    C.CheckResult(name, "skip", "Not run: the sanity checks are disabled.").as_dict(reason)
                )
            return _order(out)

        t0 = time.perf_counter()
        # (c) the white-box attacks (all attacks if none is white-box), in order and each on the points
        # still standing, at a very large eps on a sample of correctly classified points.
        big = sc.large_eps or default_large_eps(self.norm, eps_grid, self.mut.bounds)
        big_specs = [
            a for a in self.attack_specs if self._instance(a).kind == "white-box"
        ] or self.attack_specs
        big_name = " + ".join(_unique_labels(big_specs))
        sel = self._sample(correct, "c")
        standing = torch.zeros_like(correct)
        standing[sel] = True
        for k, spec in enumerate(big_specs):
            out = self._stage(
                len(eps_grid),
                big,
                f"check-c-large-{k}-{spec.name}",
                f"check (c) {spec.name}",
                spec,
                standing.nonzero().flatten(),
                standing,
                show_robust=False,
            )
            standing[out.broken] = False
        n_rob = int(standing.sum())
        self.check_time += time.perf_counter() - t0

        results = {
            "iterative_beats_single_step": C.iterative_beats_single_step(meas["a"], tol),
            "monotonic_in_eps": C.monotonic_in_eps(
                eps_grid, [r["accuracy"] for r in entries], meas["b"], tol
            ),
            "large_eps_breaks_all": C.large_eps_breaks_all(
                big, big_name, int(sel.numel()), n_rob, sc.large_eps_max_accuracy
            ),
            "black_box_not_stronger": C.black_box_not_stronger(meas["d"], tol),
            "more_iterations_no_gain": C.more_iterations_no_gain(
                None if main is None else f"{main.name} with twice the steps and more restarts",
                meas["e"],
                tol,
            ),
            **model_checks,
        }
        return _order([r.as_dict(sc.waive.get(name)) for name, r in results.items()])

    # -- outputs ---------------------------------------------------------------------------
    def _write(
        self,
        outdir: Path,
        results: AuditResults,
        robust_masks: list[torch.Tensor],
        broken_by: list[list[str | None]],
        pnorm: torch.Tensor,
        x_best: torch.Tensor,
        adv_pred_best: torch.Tensor,
        first_broken: torch.Tensor,
    ) -> None:
        from robustness.results import (
            EXAMPLES_FILE,
            pick_examples,
            render_reports,
            samples_lines,
            write_examples,
            write_results,
            write_samples,
        )

        outdir.mkdir(parents=True, exist_ok=True)
        write_results(outdir, results)  # first: a failing renderer can never cost the numbers
        eps = results.threat.eps
        robust = [m.tolist() for m in robust_masks]
        norms = [
            [(float(pnorm[j, i]) if not robust[j][i] and broken_by[j][i] else 0.0) for i in range(self.N)]
            for j in range(len(eps))
        ]
        write_samples(
            outdir,
            samples_lines(
                self.data.ids, self.y.tolist(), self.clean_pred.tolist(), eps, robust, broken_by, norms
            ),
        )
        sel = pick_examples(self.y.numpy(), first_broken.numpy())
        fb = first_broken[sel]
        x_adv = np.stack(
            [
                torch.where(
                    ((fb >= 0) & (fb <= j)).view(-1, *[1] * (self.x.dim() - 1)), x_best[sel], self.x[sel]
                ).numpy()
                for j in range(len(eps))
            ]
        )
        adv_pred = np.stack(
            [
                torch.where((fb >= 0) & (fb <= j), adv_pred_best[sel], self.clean_pred[sel]).numpy()
                for j in range(len(eps))
            ]
        )
        write_examples(
            outdir / EXAMPLES_FILE,
            {
                "ids": np.array([self.data.ids[i] for i in sel.tolist()], dtype=str),
                "y": self.y[sel].numpy(),
                "clean_pred": self.clean_pred[sel].numpy(),
                "x_clean": self.x[sel].numpy(),
                "eps": np.asarray(eps, dtype=np.float64),
                "x_adv": x_adv.astype(np.float32),
                "adv_pred": adv_pred.astype(np.int64),
            },
        )
        written, errors = render_reports(results, outdir, list(self.cfg.output.formats))
        if written or errors:
            results.files.update({fmt: Path(p).name for fmt, p in written.items()})
            if errors:
                results.renderer_errors = errors
            write_results(outdir, results)


def _unique_labels(attacks: list[AttackSpec]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for a in attacks:
        seen[a.name] = seen.get(a.name, 0) + 1
        out.append(a.name if seen[a.name] == 1 else f"{a.name}#{seen[a.name]}")
    return out


def _per_class(mask: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for c in range(num_classes):
        members = y == c
        n = int(members.sum())
        out[str(c)] = int((mask & members).sum()) / n if n else None
    return out


def _order(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from robustness.config import CHECKS

    rank = {name: i for i, name in enumerate(CHECKS)}
    return sorted(checks, key=lambda c: rank[c["name"]])


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)
