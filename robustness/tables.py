"""An audit's results as pandas tables, and many audits side by side.

``robustness.load_results(path)`` returns a :class:`ResultTables`: the typed result of
``results.json`` (every field of :class:`~robustness.core.schema.AuditResults` reads through
it: ``verdict``, ``clean``, ``gates``, ``sections``, ...) with its numbers as DataFrames:

- ``robust``: one row per eps (eps, norm, accuracy, ci_low, ci_high, n, n_robust, time_s,
  accuracy_attacks_only, and ``after:NAME``, the robust accuracy after each attack, cumulative
  in run order); the typed rows stay at ``typed.robust``;
- ``samples``: one row per sample and eps, from samples.jsonl (id, label, clean_pred, eps,
  robust, broken_by, perturbation_norm, adv_pred);
- ``attacks``: one row per eps and attack (what it added and what it cost, its parameters).

:func:`runs_table` puts many audits side by side (``robustness results``), :func:`trend_view`
describes them for the trend page (:mod:`reports.trend`). Nothing is recomputed: every number
is read from the files. pandas is imported when a table is first built.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustness.core import formatting
from robustness.core.errors import UsageError
from robustness.core.schema import RESULTS_FILE, AuditResults, RobustRow

if TYPE_CHECKING:
    import pandas as pd

    from robustness.core.schema import SectionView

# Where a run's source revision may be recorded (environment keys, first found wins).
COMMIT_KEYS = ("commit", "git_commit", "git_sha", "revision")


class ResultTables:
    """One audit: its typed result, read through, and its numbers as pandas DataFrames."""

    def __init__(self, typed: AuditResults, path: str | Path) -> None:
        self.typed = typed
        self.path = Path(path)  # the results.json read
        self.folder = self.path.parent  # where its companion files lie

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this class does not define: the typed result's fields.
        if name.startswith("__") or "typed" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.typed, name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self.typed)))

    def __repr__(self) -> str:
        return f"<ResultTables {self.path} verdict={self.typed.verdict!r}>"

    @property
    def robust_rows(self) -> list[RobustRow]:
        """The typed robust rows (``typed.robust``)."""
        return self.typed.robust

    @property
    def attack_names(self) -> list[str]:
        """The attack labels in run order."""
        names = [a.name for a in self.typed.attacks or []]
        for row in self.typed.robust:  # a file without the attack list still names them per eps
            names += [n for n in (row.per_attack or {}) if n not in names]
        return names

    @cached_property
    def robust(self) -> pd.DataFrame:
        """One row per eps: the worst case over every attack, its interval, and each attack's share."""
        import pandas as pd

        names = self.attack_names
        rows = []
        for r in self.typed.robust:
            ci = r.ci or [None, None]
            row = {
                "eps": float(r.eps),
                "norm": r.norm or (self.typed.threat.norm if self.typed.threat else None),
                "accuracy": r.accuracy,
                "ci_low": ci[0],
                "ci_high": ci[1],
                "n": r.n,
                "n_robust": r.n_robust,
                "time_s": r.time_s,
                "accuracy_attacks_only": r.accuracy_attacks_only,
            }
            row.update({f"after:{name}": (r.per_attack or {}).get(name) for name in names})
            rows.append(row)
        columns = [
            "eps",
            "norm",
            "accuracy",
            "ci_low",
            "ci_high",
            "n",
            "n_robust",
            "time_s",
            "accuracy_attacks_only",
        ]
        df = pd.DataFrame(rows, columns=columns + [f"after:{n}" for n in names])
        for c in ("n", "n_robust"):
            df[c] = df[c].astype("Int64")
        for c in ["accuracy", "ci_low", "ci_high", "time_s", "accuracy_attacks_only"] + [
            f"after:{n}" for n in names
        ]:
            df[c] = df[c].astype("float64")
        return df

    @cached_property
    def samples(self) -> pd.DataFrame:
        """One row per sample and eps, from samples.jsonl next to results.json.

        ``broken_by`` is the attack that broke the sample (None: robust, or wrong without an
        attack); ``adv_pred`` the prediction at that eps (the clean one where nothing changed
        it; <NA> where the file does not record the adversarial one).
        """
        import pandas as pd

        from reports.samples import read_samples, samples_path

        p = samples_path(self.typed, self.folder)
        if not p.is_file():
            raise UsageError(
                f"no per-sample results at {p}",
                field=str(self.path),
                fix="Keep samples.jsonl next to results.json (the audit writes both), or re-run the audit.",
            )
        cols: dict[str, list[Any]] = {
            k: []
            for k in (
                "id",
                "label",
                "clean_pred",
                "eps",
                "robust",
                "broken_by",
                "perturbation_norm",
                "adv_pred",
            )
        }
        for s in read_samples(p):
            for a in s.at:
                cols["id"].append(s.id)
                cols["label"].append(s.label)
                cols["clean_pred"].append(s.clean_pred)
                cols["eps"].append(a.eps)
                cols["robust"].append(a.robust)
                cols["broken_by"].append(a.broken_by)
                cols["perturbation_norm"].append(a.perturbation_norm)
                cols["adv_pred"].append(a.adv_pred)
        return pd.DataFrame(
            {
                "id": pd.Series(cols["id"], dtype="object"),
                "label": pd.Series(cols["label"], dtype="int64"),
                "clean_pred": pd.Series(cols["clean_pred"], dtype="int64"),
                "eps": pd.Series(cols["eps"], dtype="float64"),
                "robust": pd.Series(cols["robust"], dtype="bool"),
                "broken_by": pd.Series(cols["broken_by"], dtype="object"),
                "perturbation_norm": pd.Series(cols["perturbation_norm"], dtype="float64"),
                "adv_pred": pd.Series(cols["adv_pred"], dtype="Int64"),
            }
        )

    @cached_property
    def attacks(self) -> pd.DataFrame:
        """One row per eps and attack (run order): robust accuracy after it, what it broke, its cost."""
        import pandas as pd

        records = {a.name: a for a in self.typed.attacks or []}
        rows = []
        for r in self.typed.robust:
            costs = r.per_attack_cost or {}
            for name in self.attack_names:
                if name not in (r.per_attack or {}) and name not in costs:
                    continue
                c = costs.get(name)
                a = records.get(name)
                rows.append(
                    {
                        "eps": float(r.eps),
                        "attack": name,
                        "registered": a.attack if a else None,
                        "kind": a.kind if a else None,
                        "robust_after": (r.per_attack or {}).get(name),
                        "n_attacked": c.n_attacked if c else None,
                        "n_broken": c.n_broken if c else None,
                        "time_s": c.time_s if c else None,
                        "n_backward": c.n_backward if c else None,
                        "n_forward": c.n_forward if c else None,
                        "n_queries": c.n_queries if c else None,
                        "params": json.dumps(a.params, sort_keys=True, default=str)
                        if a and a.params
                        else None,
                    }
                )
        columns = [
            "eps",
            "attack",
            "registered",
            "kind",
            "robust_after",
            "n_attacked",
            "n_broken",
            "time_s",
            "n_backward",
            "n_forward",
            "n_queries",
            "params",
        ]
        df = pd.DataFrame(rows, columns=columns)
        for c in ("n_attacked", "n_broken", "n_backward", "n_forward", "n_queries"):
            df[c] = df[c].astype("Int64")
        for c in ("eps", "robust_after", "time_s"):
            df[c] = df[c].astype("float64")
        return df

    @property
    def commit(self) -> str | None:
        """The source revision the run recorded, if any."""
        env = self.typed.environment.to_dict() if self.typed.environment else {}
        return next((str(env[k]) for k in COMMIT_KEYS if env.get(k)), None)


def load_results(path: str | Path) -> ResultTables:
    """Read an audit's results.json (or its output folder) with its tables.

    The one loader reads the file (:func:`robustness.core.schema.load_results`: an older schema
    is migrated, impossible numbers are refused); ``samples`` reads samples.jsonl beside it.
    """
    from robustness.core.schema import load_results as load_typed

    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    return ResultTables(load_typed(p), p)


# -- many runs ------------------------------------------------------------------------------------


def in_run_order(runs: list[ResultTables]) -> list[ResultTables]:
    """The runs by the time their audits were created (runs without one last), else as given."""
    return sorted(runs, key=lambda r: (r.typed.created is None, r.typed.created or ""))


def _eps_columns(runs: list[ResultTables]) -> list[tuple[str | None, float]]:
    """(norm, eps) of every robust row of every run, ascending, each once."""
    seen: dict[tuple[str | None, float], None] = {}
    for run in runs:
        for row in run.typed.robust:
            norm = row.norm or (run.typed.threat.norm if run.typed.threat else None)
            seen[(norm, round(float(row.eps), 12))] = None
    return sorted(seen, key=lambda k: (str(k[0]), k[1]))


def _eps_label(norm: str | None, eps: float, several_norms: bool) -> str:
    return f"robust@{norm} {eps:g}" if several_norms else f"robust@{eps:g}"


def runs_table(runs: list[ResultTables]) -> pd.DataFrame:
    """One row per run: run, model, data, n, commit (when any run records one), created, clean,
    the robust accuracy at every eps of any run (NaN where a run did not measure it), verdict."""
    import pandas as pd

    eps_cols = _eps_columns(runs)
    several = len({norm for norm, _ in eps_cols}) > 1
    rows = []
    for run in runs:
        t = run.typed
        row: dict[str, Any] = {
            "run": str(run.path),
            "model": t.model.spec if t.model else None,
            "data": t.data.spec if t.data else None,
            "n": t.clean.n,
            "commit": run.commit,
            "created": t.created,
            "clean": t.clean.accuracy,
        }
        for norm, eps in eps_cols:
            match = [
                r
                for r in t.robust
                if round(float(r.eps), 12) == eps
                and (r.norm or (t.threat.norm if t.threat else None)) == norm
            ]
            row[_eps_label(norm, eps, several)] = match[0].accuracy if match else None
        row["verdict"] = t.verdict
        rows.append(row)
    columns = ["run", "model", "data", "n", "commit", "created", "clean"]
    columns += [_eps_label(norm, eps, several) for norm, eps in eps_cols] + ["verdict"]
    df = pd.DataFrame(rows, columns=columns)
    if df["commit"].isna().all():
        df = df.drop(columns="commit")
    df["n"] = df["n"].astype("Int64")
    for c in ["clean"] + [_eps_label(norm, eps, several) for norm, eps in eps_cols]:
        df[c] = df[c].astype("float64")
    return df


def formatted(df: pd.DataFrame) -> pd.DataFrame:
    """The runs table as printed: accuracies as percentages, missing values as '–'."""
    out = df.copy().astype("object")
    for c in df.columns:
        if c == "clean" or str(c).startswith("robust@"):
            out[c] = [formatting.pct(v) if v == v and v is not None else "–" for v in df[c]]
        else:
            out[c] = ["–" if v is None or v != v else str(v) for v in df[c].astype("object")]
    return out


def trend_view(runs: list[ResultTables]) -> SectionView:
    """The trend page's content: the runs table and accuracy across runs (clean and each eps,
    with the 95% intervals as bands). ``runs`` in the order to draw them."""
    from robustness.core.schema import CurveSeries, SectionCurve, SectionNote, SectionTable, SectionView

    table = formatted(runs_table(runs))
    table.insert(0, "#", [str(i) for i in range(1, len(runs) + 1)])
    x = [float(i) for i in range(1, len(runs) + 1)]
    series = [
        CurveSeries(
            "clean",
            x,
            [r.typed.clean.accuracy for r in runs],
            [(r.typed.clean.ci or [None, None])[0] for r in runs],
            [(r.typed.clean.ci or [None, None])[1] for r in runs],
        )
    ]
    eps_cols = _eps_columns(runs)
    several = len({norm for norm, _ in eps_cols}) > 1
    for norm, eps in eps_cols:
        ys, lo, hi = [], [], []
        for run in runs:
            t = run.typed
            row = next(
                (
                    r
                    for r in t.robust
                    if round(float(r.eps), 12) == eps
                    and (r.norm or (t.threat.norm if t.threat else None)) == norm
                ),
                None,
            )
            ci = (row.ci if row else None) or [None, None]
            ys.append(row.accuracy if row and row.accuracy is not None else float("nan"))
            lo.append(ci[0] if ci[0] is not None else float("nan"))
            hi.append(ci[1] if ci[1] is not None else float("nan"))
        name = f"robust, {norm} eps {formatting.eps_str(eps)}" if several or norm else f"robust, eps {eps:g}"
        series.append(CurveSeries(name, x, ys, lo, hi))
    for s in series:  # an absent interval is drawn as none
        s.lower = [float("nan") if v is None else v for v in s.lower or []]
        s.upper = [float("nan") if v is None else v for v in s.upper or []]
    notes = [
        SectionNote(
            "Runs in the order their audits were created; hover a point for the run, its accuracy and the exact "
            "95% Clopper-Pearson interval (the bands). Robust accuracy is an upper bound: a rise between runs "
            "inside the bands is not evidence of a more robust model.",
            "caption",
        )
    ]
    differ = [
        what
        for what, values in (
            ("models", {r.typed.model.spec if r.typed.model else None for r in runs}),
            ("data", {(r.typed.data.spec, r.typed.data.n) if r.typed.data else None for r in runs}),
            (
                "attacks",
                {json.dumps([a.to_dict() for a in r.typed.attacks or []], sort_keys=True) for r in runs},
            ),
        )
        if len(values) > 1
    ]
    if differ:
        notes.append(
            SectionNote(
                f"The runs differ in their {', '.join(differ)}: a change of accuracy between them may come from "
                "that, not from the model's robustness (a weaker attack budget reports a higher robust accuracy)."
            )
        )
    latest = runs[-1].typed if runs else None
    summary = (
        f"{len(runs)} runs"
        + (f" from {runs[0].typed.created or '?'} to {latest.created or '?'}" if latest else "")
        + (f"; the latest verdict: {latest.verdict}." if latest else ".")
    )
    return SectionView(
        title="Robustness across runs",
        label="Trend",
        summary=summary,
        table=SectionTable(list(table.columns), table.values.tolist()),
        figures=[SectionCurve("Accuracy across runs", "run", "accuracy", series)],
        notes=notes,
    )


def run_names(runs: list[ResultTables]) -> list[str]:
    """How each run is named on a hovered point: '#3 runs/x/results.json (created ...)'."""
    return [f"#{i} {r.path} ({r.typed.created or 'no date'})" for i, r in enumerate(runs, 1)]
