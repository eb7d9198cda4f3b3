"""robustness compare: paired exact McNemar test on shared sample ids, exit codes 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustness.cli import main
from robustness.compare import compare, mcnemar_exact
from robustness.core.errors import UsageError

FIXTURE = Path(__file__).resolve().parents[1] / "reports" / "data"


@pytest.mark.parametrize(
    ("lost", "gained", "p"),
    [
        (0, 0, 1.0),
        (5, 5, 1.0),
        (10, 0, 2 / 2**10),  # 0.001953125
        (0, 10, 2 / 2**10),
        (3, 1, 2 * (1 + 4) / 16),  # 0.625
        (7, 2, 2 * (1 + 9 + 36) / 512),  # 0.1796875
        (6, 0, 2 / 64),  # 0.03125: the smallest all-one-way count that is significant at 0.05
        (5, 0, 2 / 32),  # 0.0625: not significant
    ],
)
def test_mcnemar_exact_known_values(lost, gained, p):
    assert mcnemar_exact(lost, gained) == pytest.approx(p, rel=1e-12)


def test_mcnemar_matches_scipy_binomtest():
    from scipy.stats import binomtest

    for lost, gained in [(13, 4), (40, 25), (1, 20), (600, 520), (2000, 1900)]:
        ref = binomtest(min(lost, gained), lost + gained, 0.5).pvalue
        assert mcnemar_exact(lost, gained) == pytest.approx(ref, rel=1e-9)


def write_run(
    folder: Path,
    robust: dict[str, list[bool]],
    *,
    ids: list[str] | None = None,
    clean_ok: list[bool] | None = None,
    norm: str = "linf",
    labels: list[int] | None = None,
) -> Path:
    """A results folder with per-sample robust flags per eps (the keys of ``robust``)."""
    eps = sorted(robust, key=float)
    n = len(next(iter(robust.values())))
    ids = ids or [f"s-{i}" for i in range(n)]
    clean_ok = clean_ok or [True] * n
    labels = labels or [int(sid.rsplit("-", 1)[1]) % 10 for sid in ids]  # a label belongs to its sample
    folder.mkdir(parents=True)
    rows = []
    with open(folder / "samples.jsonl", "w") as fh:
        for i in range(n):
            fh.write(
                json.dumps(
                    {
                        "id": ids[i],
                        "label": labels[i],
                        "clean_pred": labels[i] if clean_ok[i] else (labels[i] + 1) % 10,
                        "eps": [
                            {
                                "eps": float(e),
                                "robust": robust[e][i],
                                "broken_by": None,
                                "perturbation_norm": 0.0,
                            }
                            for e in eps
                        ],
                    }
                )
                + "\n"
            )
    for e in eps:
        k = sum(robust[e])
        rows.append({"eps": float(e), "norm": norm, "n": n, "n_robust": k, "accuracy": k / n, "ci": [0, 1]})
    res = {
        "schema_version": "1.1",
        "data": {"spec": "builtin:digits", "n": n},
        "threat": {"norm": norm, "eps": [float(e) for e in eps], "bounds": [0, 1]},
        "clean": {"accuracy": sum(clean_ok) / n},
        "robust": rows,
        "sanity_checks": [],
        "gates": [],
        "verdict": "pass",
        "files": {"samples": "samples.jsonl"},
    }
    (folder / "results.json").write_text(json.dumps(res))
    return folder / "results.json"


def test_significant_regression_exits_1_and_max_drop_tolerates_it(tmp_path):
    base = write_run(tmp_path / "base", {"0.1": [True] * 100, "0.2": [True] * 50 + [False] * 50})
    # NEW loses 10 samples at eps 0.1 (and the same 10 are among those still robust at 0.2 in BASE).
    new_01 = [i >= 10 for i in range(100)]
    new_02 = [10 <= i < 50 for i in range(100)]
    new = write_run(tmp_path / "new", {"0.1": new_01, "0.2": new_02})
    cmp = compare(base, new)
    row = {r.label: r for r in cmp.rows}
    r = row["eps 0.1"]
    assert (r.lost, r.gained, r.n_shared) == (10, 0, 100)
    assert r.p_value == pytest.approx(2 / 2**10)
    assert r.delta == pytest.approx(-0.10) and r.regression
    assert row["eps 0.2"].lost == 10 and row["eps 0.2"].regression
    assert not row["clean"].regression and row["clean"].p_value == 1.0
    assert cmp.exit_code == 1
    # A 10-point drop is within --max-drop 0.15: no failure, even though it is significant.
    assert compare(base, new, max_drop=0.15).exit_code == 0
    # Exactly at the limit is not "larger than" it.
    assert compare(base, new, max_drop=0.10).exit_code == 0
    assert compare(base, new, max_drop=0.09).exit_code == 1


def test_not_significant_drop_and_improvement_exit_0(tmp_path):
    base = write_run(tmp_path / "base", {"0.1": [True] * 20 + [False] * 80})
    # 3 lost, 1 gained: a 2-point drop with p = 0.625.
    new_flags = [False, False, False] + [True] * 17 + [True] + [False] * 79
    new = write_run(tmp_path / "new", {"0.1": new_flags})
    r = compare(base, new).rows[1]
    assert (r.lost, r.gained) == (3, 1) and r.p_value == pytest.approx(0.625)
    assert r.delta == pytest.approx(-0.02) and not r.regression
    # The reverse direction (NEW better by 10 samples) is significant but an improvement.
    better = write_run(tmp_path / "better", {"0.1": [True] * 30 + [False] * 70})
    cmp = compare(base, better)
    assert cmp.rows[1].gained == 10 and cmp.rows[1].p_value < 0.05 and cmp.exit_code == 0


def test_pairs_on_shared_ids_only(tmp_path):
    base = write_run(tmp_path / "base", {"0.1": [True] * 8}, ids=[f"s-{i}" for i in range(8)])
    # NEW has s-4..s-11; only s-4..s-7 are shared, two of them broken in NEW.
    new = write_run(
        tmp_path / "new",
        {"0.1": [False, False, True, True] + [False] * 4},
        ids=[f"s-{i}" for i in range(4, 12)],
    )
    cmp = compare(base, new)
    assert cmp.n_shared == 4 and cmp.rows[1].lost == 2 and cmp.rows[1].base_shared == 1.0
    assert cmp.rows[1].new_shared == 0.5 and cmp.rows[1].new_accuracy == pytest.approx(2 / 8)
    assert any("only 4 sample ids" in n for n in cmp.notes)


def test_cli_exit_codes_and_json(tmp_path, capsys):
    base = write_run(tmp_path / "base", {"0.1": [True] * 100})
    new = write_run(tmp_path / "new", {"0.1": [i >= 10 for i in range(100)]})
    assert main(["compare", str(base), str(new)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "result: significant regression at eps 0.1" in out
    assert main(["compare", str(base.parent), str(new.parent), "--max-drop", "0.2", "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["exit_code"] == 0 and js["rows"][1]["lost"] == 10
    assert js["rows"][1]["p_value"] == pytest.approx(0.001953125)
    # The fixture audit against itself: nothing changes.
    assert main(["compare", str(FIXTURE), str(FIXTURE / "results.json")]) == 0
    assert "+0.0p" in capsys.readouterr().out


def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys):
    base = write_run(tmp_path / "base", {"0.1": [True] * 10})
    other_grid = write_run(tmp_path / "grid", {"0.1": [True] * 10, "0.2": [True] * 10})
    other_norm = write_run(tmp_path / "norm", {"0.1": [True] * 10}, norm="l2")
    no_samples = write_run(tmp_path / "nos", {"0.1": [True] * 10})
    (no_samples.parent / "samples.jsonl").unlink()
    relabelled = write_run(tmp_path / "lab", {"0.1": [True] * 10}, labels=[(i + 3) % 10 for i in range(10)])
    cases = [
        (tmp_path / "missing" / "results.json", "does not exist"),
        (other_grid, "different eps grids"),
        (other_norm, "different threat models"),
        (no_samples, "samples.jsonl is missing"),
        (relabelled, "different labels"),
    ]
    for new, message in cases:
        assert main(["compare", str(base), str(new)]) == 2, message
        assert message in capsys.readouterr().err
    assert main(["compare", str(base), str(base), "--max-drop", "5"]) == 2
    assert "--max-drop" in capsys.readouterr().err
    with pytest.raises(UsageError, match="share no sample ids"):
        compare(
            base, write_run(tmp_path / "disjoint", {"0.1": [True] * 10}, ids=[f"x-{i}" for i in range(10)])
        )
