"""The audit runner: config in, schema-versioned results out.

For each eps (ascending), for each configured attack in order: attack the samples still robust
and fold what it broke into the per-sample ledger (:mod:`robustness.audit.ledger`). A sample
broken at a smaller eps stays broken (its adversarial example is valid at every larger eps), so
robust accuracy can never rise with eps, and each sample's result is the worst case over the
attacks. Every attack runs as a checkpointed stage (:mod:`robustness.audit.stages`): an
interrupted audit resumes where it stopped and ends with the same numbers.

The sanity checks (:mod:`robustness.audit.check`, one file each in ``checks/``) use real
measurements: the model checks run first; the attack checks run real attacks at each eps after
the audit's own and once after the eps loop. Adversarial examples a check attack finds are real:
they are folded into the ledger (``broken_by: "check:..."``), so the reported robust accuracy is
never higher than what any attack of the run found.

Each attack stage also brings the counts behind the indicators of attack failure (its own loss
trajectories, :mod:`attacks.trace`); the runner keeps them per attack in an
:class:`~robustness.audit.indicators.IndicatorBook` (check (c) adds what each attack left at its
very large eps), writes them on the attack records and the check ``attack_failure`` judges them.

Under ``torchrun`` (see :mod:`robustness.core.distributed`) the batches of each stage are shared out
(rank ``r`` runs batches ``r, r + world, ...``, each with its own position-derived seed) and every
rank gathers all outcomes before the next stage, so every rank follows the same path and the
numbers equal a single process's. Rank 0 alone reads and writes the checkpoint's shared records
and the outputs; each rank checkpoints the batches it ran, so a rerun resumes on every rank.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from robustness import __version__
from robustness.audit.check import CheckResult, EpsStep, SanityCheck, checks_in_order
from robustness.audit.indicators import IndicatorBook
from robustness.audit.ledger import Ledger
from robustness.audit.stages import StageOutcome, Stages
from robustness.checkpoint import Checkpoint, derive_seed
from robustness.config import (
    AttackSpec,
    AuditConfig,
    apply_overrides,
    check_config,
    check_inputs,
    load_config,
)
from robustness.core.data import check_labels_fit_model
from robustness.core.distributed import DistContext, current
from robustness.core.rows import SampleRows
from robustness.core.runlock import RunLock
from robustness.core.threads import apply_threads, batch_pass_probe
from robustness.progress import Progress, choose_mode

if TYPE_CHECKING:
    from robustness.core.schema import AuditResults


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


class AuditRunner:
    """Runs one audit; :meth:`run` returns the results dict and writes the outputs.

    While it runs, the sanity checks and sections read it: ``cfg``, ``model``, ``x`` (the inputs
    by position, :class:`~robustness.core.rows.SampleRows`: ``x[idx]`` reads those samples),
    ``y``, ``norm``, ``eps_grid``, ``ledger``, ``stages``, ``attack_specs``, ``labels``,
    ``main_attack``, ``robust_rows``, ``indicators`` and the helpers :meth:`sample`,
    :meth:`model_sample`, :meth:`attack_and_fold`, :meth:`spec_for`, :meth:`labels_of` and
    :meth:`dataset`.
    """

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
        self.attack_time = 0.0
        self.eot_used = False
        # Set by the determinism check: the forward pass is randomized (EOT, majority votes).
        self.randomized = False
        self.robust_rows: list[dict[str, Any]] = []
        self._dataset: Any = None  # the streamed data read whole, once a section asks (dataset())
        self._spec_by_label: dict[str, AttackSpec] = {}
        # Per attack of the run, the indicators of attack failure (filled by the stages and check (c)).
        self.indicators = IndicatorBook()

    # -- setup -----------------------------------------------------------------------------
    def _load_model(self) -> Any:
        from robustness.core.model import load_model

        options = self.cfg.model
        # A model object passed to run_audit (ModelUnderTest or nn.Module) replaces the spec;
        # load_model returns a ModelUnderTest as is and wraps a module with the config's options.
        return load_model(
            self._model_obj if self._model_obj is not None else options.spec,
            weights=options.weights if self._model_obj is None else None,
            trust_model=options.trust_model,
            bounds=options.bounds,
            mean=options.mean,
            std=options.std,
            device=options.device,
            precision=options.precision,
            channels_last=options.channels_last,
            compile=options.compile,
            model_args=options.args if self._model_obj is None else None,
        )

    def _open_data(self, model: Any) -> Any:
        """The evaluation data as a stream (robustness.core.stream): in memory as it always was,
        or read batch by batch (image folders, memory-mapped arrays, a factory's Dataset)."""
        from robustness.core.data import open_data

        spec = self._data_obj if self._data_obj is not None else self.cfg.data.spec
        return open_data(
            spec,
            n_examples=self.cfg.data.n_examples,
            seed=self.cfg.data_seed,
            bounds=model.bounds,
            model_outputs=model.num_classes,
            **self.cfg.data.load_options(),  # data.args, image_size, image_mode, workers
        )

    def _fingerprint_parts(self, attacks: list[AttackSpec], model: Any) -> dict[str, Any]:
        cfg = self.cfg
        checks = cfg.sanity_checks
        return {
            "tool": __version__,
            "model_options": cfg.model.model_dump(mode="json"),
            "data_options": {**cfg.data.model_dump(mode="json"), "seed": cfg.data_seed},
            "threat": cfg.threat.model_dump(mode="json"),
            "attacks": [a.model_dump(mode="json") for a in attacks],
            "sanity_checks": {
                "enabled": checks.enabled,
                "sample_size": checks.sample_size,
                "tolerance": checks.tolerance,
                "large_eps": checks.large_eps,
            },
            "seed": cfg.seed,
            "eot_samples": cfg.eot_samples,
            "batch_size": self.batch_size,
            "model": model.sha256(),
            "data": self.data_sha256,
        }

    def _batch_size(self, model: Any) -> tuple[int, dict[str, Any] | None]:
        """``data.batch_size``, with ``auto`` resolved by trying (robustness.core.batchsize) on
        the main rank and shared, so every rank cuts the same batches."""
        setting = self.cfg.data.batch_size
        if setting != "auto":
            return int(setting), None
        from robustness.core.batchsize import auto_batch_size

        found = self.dist.main_only(
            lambda: auto_batch_size(model, self.x[:8], self.n, backward=True).to_dict()
        )
        return int(found["batch_size"]), found

    def _set_threads(self, model: Any) -> None:
        """The CPU thread count (config ``threads``); under torchrun ``auto`` keeps each rank's share."""
        setting = self.cfg.threads
        if setting == "auto" and (self.dist.world_size > 1 or model.device.type != "cpu"):
            return
        apply_threads(setting, batch_pass_probe(model, self.x, self.batch_size))

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
        attacks = self._start()
        clean, clean_s = self._clean()
        self.ledger = self._new_ledger()
        self.checks: list[SanityCheck] = [check(self) for check in checks_in_order()]
        attacks = self._measure_the_model(attacks)
        if self.randomized:  # the clean metrics of the voted predictions
            clean = self._clean_metrics()
        self.attack_specs = attacks
        self.labels = self.labels_of(attacks)
        self._spec_by_label.update(zip(self.labels, attacks))
        self.main_attack = self._main_attack(attacks)

        for eps_index, eps in enumerate(self.eps_grid):
            self._attack_at(eps_index, eps)
        check_results = self._judge_checks()

        from robustness.audit.section import run_sections

        sections, section_gates = run_sections(self)
        from robustness.core.verdict import verdict
        from robustness.gates import evaluate_gates

        attack_records = [
            {
                "name": label,
                "attack": spec.name,
                "params": _jsonable(self.stages.instance(spec).params),
                "kind": self.stages.instance(spec).kind,
                "indicators": self.indicators.records(label),
            }
            for spec, label in zip(attacks, self.labels)
        ]
        # The baseline's budget is compared with what really ran (EOT may have wrapped attacks).
        gates = evaluate_gates(cfg, clean, self.robust_rows, self.data_sha256, attacks=attack_records)
        gates += section_gates
        outcome, reason = verdict(check_results, gates)
        results = self._results(
            clean, clean_s, attack_records, check_results, gates, outcome, reason, sections
        )
        results["timing"]["total_s"] = round(time.perf_counter() - t_start, 3)
        from robustness.audit.outputs import typed_results

        # The one typed result: results.json and every report are written from it.
        result = typed_results(results)
        if self.dist.is_main:
            self._write(Path(cfg.output.dir), result)
            self.checkpoint.mark_complete()
        # No rank returns (and exits) before the outputs exist.
        self.dist.barrier()
        self.progress.close()
        return result.to_dict()

    def _start(self) -> list[AttackSpec]:
        """Check the config and inputs, load the model and data, open the checkpoint."""
        cfg = self.cfg
        attacks = check_config(cfg)
        # The same start-up checks as 'robustness validate', before any model loads or trains.
        check_inputs(cfg, model=self._model_obj is None, data=self._data_obj is None)
        model = self._load_model()
        data = self._open_data(model)
        # The inputs by position, read when asked (in memory: the tensor itself); the audit keeps
        # per-sample scalars (labels, predictions, the ledger's columns) and the batches in flight.
        self.x = SampleRows(data)
        self.n = len(self.x)
        model.validate(self.x[:8])
        self.model, self.data = model, data
        self.batch_size, self.batch_size_search = self._batch_size(model)
        # The labels and the data's hash (the checkpoint's fingerprint): one pass for a stream.
        self.y, self.data_sha256 = self.x.labels_and_sha256(self.batch_size)
        # A model with too few outputs for the labels is the model's problem (ModelError).
        check_labels_fit_model(int(self.y.max()), int(model.num_classes))
        self._set_threads(model)
        self.norm = cfg.threat.norm
        self.eps_grid = list(cfg.threat.eps)
        outdir = Path(cfg.output.dir)
        self.checkpoint = Checkpoint(outdir, self._fingerprint_parts(attacks, model))
        state = self.dist.main_only(lambda: self.checkpoint.open(restart=self.restart))
        self.checkpoint.folder.mkdir(parents=True, exist_ok=True)  # ranks on other nodes keep their batches
        if state == "resumed" and not self.quiet:
            print(
                f"robustness: resuming the unfinished audit in {outdir} (same config, model and data)",
                file=sys.stderr,
            )
        self.stages = Stages(
            model=model,
            x=self.x,
            y=self.y,
            norm=self.norm,
            batch_size=self.batch_size,
            seed=cfg.seed,
            checkpoint=self.checkpoint,
            dist=self.dist,
            progress=self.progress,
        )
        return attacks

    def _clean(self) -> tuple[dict[str, Any], float]:
        """Clean predictions (checkpointed: a resumed run must start from the same ones) and metrics."""
        t0 = time.perf_counter()

        def clean_predictions() -> torch.Tensor:
            rec = self.checkpoint.load_json("clean")
            if isinstance(rec, dict) and isinstance(rec.get("pred"), list) and len(rec["pred"]) == self.n:
                return torch.tensor(rec["pred"], dtype=torch.long)
            pred = torch.empty(self.n, dtype=torch.long)
            for rows, xb in self._all_batches():
                pred[rows] = self.model.predict(xb, self.batch_size).cpu()
            self.checkpoint.save_json("clean", {"pred": pred.tolist()})
            return pred

        # Rank 0's predictions everywhere: every rank must attack the same set of samples.
        self.clean_pred = self.dist.main_only(clean_predictions)
        return self._clean_metrics(), time.perf_counter() - t0

    def _clean_metrics(self) -> dict[str, Any]:
        from robustness.core.metrics import classification_metrics

        clean = classification_metrics(self.y.numpy(), self.clean_pred.numpy(), int(self.model.num_classes))
        clean["ci"] = clean["accuracy_ci"]
        return clean

    def _measure_the_model(self, attacks: list[AttackSpec]) -> list[AttackSpec]:
        """The model checks, first. A randomized forward pass (whatever the preset) switches the
        audit to the evaluation of randomized defenses: every gradient attack averages
        ``eot_samples`` draws (EOT), every prediction that judges success is the majority of
        ``eot_samples`` draws (the clean ones included), and the checks that asked are measured
        again knowing that; their detail says so."""
        t0 = time.perf_counter()
        model_checks = [c for c in self.checks if c.kind == "model"]
        outcomes = self.dist.main_only(lambda: [c.measure_model(eot_used=False) for c in model_checks])
        asking = [c for c, outcome in zip(model_checks, outcomes) if c.wants_eot(outcome)]
        if asking:
            self.randomized = True
            attacks, self.eot_used = self._with_eot(attacks)
            self.stages.votes = int(self.cfg.eot_samples)
            self._clean_by_vote()
            again = self.dist.main_only(lambda: [c.measure_model(eot_used=self.eot_used) for c in asking])
            for check, outcome in zip(asking, again):
                outcome.detail += " " + self.randomized_protocol()
                outcome.measured["eot_samples"] = int(self.cfg.eot_samples)
                outcomes[model_checks.index(check)] = outcome
        for check, outcome in zip(model_checks, outcomes):
            check.outcome = outcome
        self.check_time += time.perf_counter() - t0
        return attacks

    def randomized_protocol(self) -> str:
        """How a randomized model was evaluated, in one sentence for the report."""
        n = int(self.cfg.eot_samples)
        return (
            f"Randomized-defense protocol: each gradient attack averaged {n} draws of the model per step "
            f"(EOT); every prediction that judged success, the clean ones included, is the majority of "
            f"{n} draws, so a sample counts as broken only when most draws misclassify it; each "
            "sample's example is the one its repeated predictions confirmed, and a single lucky draw "
            "never took a sample away from the later attacks."
        )

    def _clean_by_vote(self) -> None:
        """Clean predictions by majority vote (checkpointed), and the ledger started on them."""
        from attacks.base import majority_vote

        def voted() -> torch.Tensor:
            rec = self.checkpoint.load_json("clean-votes")
            if isinstance(rec, dict) and isinstance(rec.get("pred"), list) and len(rec["pred"]) == self.n:
                return torch.tensor(rec["pred"], dtype=torch.long)
            pred = torch.empty(self.n, dtype=torch.long)
            with self.model.evaluating(freeze=True):
                for rows, xb in self._all_batches():
                    votes, _, _ = majority_vote(
                        self.model,
                        xb.to(self.model.device),
                        self.y[rows],
                        votes=int(self.cfg.eot_samples),
                        seed=derive_seed(self.cfg.seed, "clean-votes", rows.start),
                        batch_size=self.batch_size,
                    )
                    pred[rows] = votes.cpu()
            self.checkpoint.save_json("clean-votes", {"pred": pred.tolist()})
            return pred

        self.clean_pred = self.dist.main_only(voted)
        self.ledger = self._new_ledger()

    def _all_batches(self) -> Iterator[tuple[slice, torch.Tensor]]:
        """Every sample in order, a batch at a time: ``(rows, inputs)``."""
        bs = self.batch_size
        for k, xb in self.x.batches(torch.arange(self.n), bs):
            yield slice(k * bs, k * bs + xb.shape[0]), xb

    def _new_ledger(self) -> Ledger:
        """The ledger started on the clean predictions; the rank that writes the outputs keeps
        the examples."""
        return Ledger(
            self.y, self.clean_pred, len(self.eps_grid), self.x.sample_shape, keep_examples=self.dist.is_main
        )

    def _attack_at(self, eps_index: int, eps: float) -> None:
        """One eps: each attack on the samples still robust, folded into the ledger; then the
        checks' attacks; then the robust row, and the ledger carries on to the next eps."""
        ledger = self.ledger
        step = EpsStep(index=eps_index, eps=eps, start_alive=ledger.alive)
        per_attack: dict[str, float] = {}
        per_cost: dict[str, dict[str, Any]] = {}
        time_s = 0.0
        for k, (spec, label) in enumerate(zip(self.attack_specs, self.labels)):
            kind = self.stages.instance(spec).kind
            if kind != "white-box" and step.black_box_tested is None:
                step.black_box_tested = ledger.n_robust()
            out, _ = self.attack_and_fold(step, f"a{k}-{spec.name}", label, spec, ledger.standing(), label)
            attack = self.stages.instance(spec)
            self.indicators.add(label, eps, out.indicators, attack=attack.name, members=attack.members)
            per_attack[label] = ledger.n_robust() / self.n
            per_cost[label] = out.cost()
            time_s += out.time_s
            if kind == "white-box":
                step.white_box_broken += out.n_broken
            else:
                step.black_box_by[label] = out.n_broken
        self.attack_time += time_s
        n_attacks_only = ledger.n_robust()
        if self.cfg.sanity_checks.enabled:
            t0 = time.perf_counter()
            for check in self.checks:
                check.at_eps(step)
            self.check_time += time.perf_counter() - t0

        from robustness.core.metrics import clopper_pearson

        n_robust = ledger.n_robust()
        self.robust_rows.append(
            {
                "eps": eps,
                "norm": self.norm,
                "n": self.n,
                "n_robust": n_robust,
                "accuracy": n_robust / self.n,
                "ci": list(clopper_pearson(n_robust, self.n)),
                "per_attack": per_attack,
                "per_attack_cost": per_cost,
                "per_class_accuracy": ledger.per_class_accuracy(int(self.model.num_classes)),
                "time_s": round(time_s, 4),
                "accuracy_attacks_only": n_attacks_only / self.n,
                "found_by_checks": step.found,
            }
        )
        ledger.close_eps()

    # -- what the checks use ----------------------------------------------------------------
    def attack_and_fold(
        self, step: EpsStep, key: str, progress_label: str, spec: AttackSpec, idx: torch.Tensor, label: str
    ) -> tuple[StageOutcome, int]:
        """Run ``spec`` on ``idx`` at this eps and fold what it breaks into the ledger as ``label``;
        the outcome and how many samples it newly broke."""
        ledger = self.ledger
        out = self.stages.run(
            step.index,
            step.eps,
            key,
            progress_label,
            spec,
            idx,
            ledger.alive,
            fold=lambda part: ledger.fold(part, label),
        )
        self._spec_by_label[label] = spec
        return out, out.n_folded

    def dataset(self) -> Any:
        """The evaluation data whole in memory (a :class:`~robustness.core.data.Dataset`), for the
        sections whose methods need every sample at once (privacy, extraction, watermark): data
        in memory as it is, streamed data read once into memory here."""
        if self.x.in_memory:
            return self.data.dataset
        if self._dataset is None:
            self._dataset = self.data.materialize(self.batch_size)
        return self._dataset

    def spec_for(self, label: str) -> AttackSpec | None:
        """The attack behind a ledger label (an attack of the run or a check's)."""
        return self._spec_by_label.get(label)

    def sample(self, mask: torch.Tensor, tag: Any, k: int | None = None) -> torch.Tensor:
        """Up to ``k`` (sample_size) indices of ``mask``, drawn reproducibly for ``tag``."""
        k = k or self.cfg.sanity_checks.sample_size
        idx = mask.nonzero().flatten()
        if idx.numel() <= k:
            return idx
        generator = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "sample", tag))
        return idx[torch.randperm(idx.numel(), generator=generator)[:k]].sort().values

    def model_sample(self) -> torch.Tensor:
        """The samples the model checks measure: correctly classified ones (any, if none is)."""
        correct = self.ledger.correct
        return self.sample(correct if correct.any() else torch.ones_like(correct), "model")

    @staticmethod
    def labels_of(attacks: list[AttackSpec]) -> list[str]:
        """Unique labels of a list of attacks: pgd, pgd#2, eot(fab), bpda(apgd-ce), ..."""
        seen: dict[str, int] = {}
        out = []
        for a in attacks:
            # A wrapper (eot, bpda, transfer) is named with the attack it wraps: eot(fab).
            inner = a.params.get("attack")
            name = f"{a.name}({inner})" if isinstance(inner, str) else a.name
            seen[name] = seen.get(name, 0) + 1
            out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
        return out

    def _main_attack(self, attacks: list[AttackSpec]) -> AttackSpec | None:
        """The first iterative white-box attack (it has a ``steps`` parameter)."""
        for spec in attacks:
            inst = self.stages.instance(spec)
            if inst.kind == "white-box" and "steps" in inst.params and int(inst.params["steps"]) > 1:
                return spec
        return None

    def _with_eot(self, attacks: list[AttackSpec]) -> tuple[list[AttackSpec], bool]:
        """Every gradient attack with expectation over transformation (a randomized model): APGD
        averages its own ``eot_samples`` draws per step (``eot_iter``), any other white-box attack
        runs inside the ``eot`` wrapper; black-box attacks are judged by the votes alone."""
        draws = int(self.cfg.eot_samples)
        out = []
        for spec in attacks:
            inst = self.stages.instance(spec)
            if inst.kind != "white-box" or spec.name == "eot":
                out.append(spec)
            elif "eot_iter" in inst.params:
                out.append(AttackSpec(name=spec.name, params={**spec.params, "eot_iter": draws}))
            else:
                params = {"attack": spec.name, "attack_params": dict(spec.params), "eot_samples": draws}
                out.append(AttackSpec(name="eot", params=params))
        return out, any(new is not old for new, old in zip(out, attacks))

    # -- the checks' verdicts ----------------------------------------------------------------
    def _judge_checks(self) -> list[dict[str, Any]]:
        """Every check's outcome (after the measurements it takes once the eps loop is done), in
        the documented order; disabled checks are skipped, every one waived with the reason."""
        settings = self.cfg.sanity_checks
        if not settings.enabled:
            reason = (settings.reason or "").strip()
            return [
                (
                    check.judge()
                    if check.kind == "model"
                    else CheckResult(check.name, "skip", "Not run: the sanity checks are disabled.")
                ).as_dict(reason)
                for check in self.checks
            ]
        t0 = time.perf_counter()
        for check in self.checks:
            check.after_attacks()
        self.check_time += time.perf_counter() - t0
        return [check.judge().as_dict(settings.waive.get(check.name)) for check in self.checks]

    # -- outputs ---------------------------------------------------------------------------
    def _results(
        self,
        clean: dict[str, Any],
        clean_s: float,
        attack_records: list[dict[str, Any]],
        check_results: list[dict[str, Any]],
        gates: list[dict[str, Any]],
        verdict: str,
        reason: str,
        sections: dict[str, Any],
    ) -> dict[str, Any]:
        from robustness.audit.outputs import EXAMPLES_FILE, SAMPLES_FILE, SCHEMA_VERSION, environment, now_iso

        cfg, model, data, dist = self.cfg, self.model, self.data, self.dist
        card = model.metadata.get("card") or {}
        class_names = data.meta.get("class_names")
        return {
            "schema_version": SCHEMA_VERSION,
            "tool_version": __version__,
            "created": now_iso(),
            "config": cfg.model_dump(mode="json"),
            "environment": {
                **environment(str(model.device), cfg.seed, self.command_line, model.precision),
                "channels_last": model.channels_last,
                "compiled": model.compiled,
                "processes": dist.describe(),
            },
            "model": {
                "spec": model.spec,
                "sha256": model.sha256(),
                "n_parameters": model.n_parameters,
                "bounds": list(model.bounds),
                "num_classes": int(model.num_classes),
                "outputs_probabilities": bool(model.outputs_probabilities),
                "mean": model.mean,
                "std": model.std,
                # how a factory was built (model.args / --model-arg), so the audit names the model it measured
                **({"args": dict(model.metadata["args"])} if model.metadata.get("args") else {}),
                # a model trained with differential privacy: the (epsilon, delta) its card records
                **{key: card[key] for key in ("epsilon", "delta") if card.get(key) is not None},
            },
            "data": {
                "spec": data.spec,
                "n": self.n,
                "sha256": self.data_sha256,
                "shape": list(self.x.sample_shape),
                "seed": cfg.data_seed,
                "n_examples": cfg.data.n_examples,
                **({"class_names": list(class_names)} if class_names else {}),
                "batch_size": self.batch_size,
                **({"batch_size_search": self.batch_size_search} if self.batch_size_search else {}),
            },
            "threat": {"norm": self.norm, "eps": self.eps_grid, "bounds": list(model.bounds)},
            "clean": clean,
            "attacks": attack_records,
            "robust": self.robust_rows,
            "sanity_checks": check_results,
            "gates": gates,
            "verdict": verdict,
            "verdict_reason": reason,
            "timing": {
                "total_s": None,
                "clean_s": round(clean_s, 4),
                "attacks_s": round(self.attack_time, 3),
                "checks_s": round(self.check_time, 3),
                "resumed_batches": dist.sum_counts([self.checkpoint.n_loaded])[0],
                "note": "attack and check times include work done before a resume",
            },
            "files": {"samples": SAMPLES_FILE, "examples": EXAMPLES_FILE},
            **sections,
            "eot_used": self.eot_used,
        }

    def _write(self, outdir: Path, results: AuditResults) -> None:
        from robustness.audit.outputs import (
            EXAMPLES_FILE,
            render_reports,
            write_examples,
            write_results,
            write_samples,
        )

        ledger = self.ledger
        outdir.mkdir(parents=True, exist_ok=True)
        write_results(outdir, results)  # first: a failing renderer can never cost the numbers
        eps = results.threat.eps
        ids = self.data.ids
        write_samples(outdir, ledger.sample_lines(ids, eps))
        write_examples(outdir / EXAMPLES_FILE, ledger.examples(self.x, ids, eps))
        written, errors = render_reports(results, outdir, list(self.cfg.output.formats))
        if written or errors:
            results.files.update({fmt: Path(p).name for fmt, p in written.items()})
            if errors:
                results.renderer_errors = errors
            write_results(outdir, results)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)
