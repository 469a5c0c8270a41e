"""Offset power-law fits: exact recovery, interval coverage, degenerate inputs, reports."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genrec.errors import InputError
from genrec.scaling import ScalingConfig, diagnose_curve, diagnose_scaling, fit_power_law

SIZES = np.array([1e5, 4e5, 1.6e6, 6.4e6, 2.56e7])


def curve(sizes, E=0.40, A=0.25, alpha=0.35, n0=1e5):
    return E - A * (np.asarray(sizes) / n0) ** -alpha


def test_exact_curve_is_recovered():
    config = ScalingConfig()
    fit = fit_power_law(SIZES, curve(SIZES), -1, config)
    assert abs(fit.E - 0.40) < 1e-3 and abs(fit.A - 0.25) < 1e-3 and abs(fit.alpha - 0.35) < 1e-3
    loss = 2.0 + 1.5 * (SIZES / 1e5) ** -0.2
    lfit = fit_power_law(SIZES, loss, +1, config)
    assert abs(lfit.E - 2.0) < 1e-3 and abs(lfit.A - 1.5) < 1e-3 and abs(lfit.alpha - 0.2) < 1e-3


def _noisy_users(rng, n_users=200, noise=0.15, alpha=0.35):
    """[U, S] per-user metrics: the true curve + a per-user offset + per-(user, size) noise."""
    user_offset = rng.normal(0, noise, size=(n_users, 1))
    return curve(SIZES, alpha=alpha)[None, :] + user_offset + rng.normal(0, noise, size=(n_users, len(SIZES)))


def test_intervals_cover_the_true_exponent():
    """90% intervals from user resampling cover the true alpha in >= 85% of 200 seeded worlds."""
    config = ScalingConfig(n_bootstrap=200, confidence=0.9, grid_size=120)
    covered, trials, widths = 0, 200, []
    for seed in range(trials):
        rng = np.random.default_rng(1000 + seed)
        result = diagnose_curve("play", "metric", SIZES, _noisy_users(rng, noise=0.05), True,
                                ScalingConfig(**{**config.__dict__, "seed": seed}))
        alpha = result["params"]["alpha"]
        covered += alpha["lower"] <= 0.35 <= alpha["upper"]
        widths.append(alpha["upper"] - alpha["lower"])
    assert covered / trials >= 0.85, f"coverage {covered}/{trials}"
    assert np.median(widths) < 0.2  # informative intervals, not the whole alpha range


def test_verdicts_headroom_and_saturated():
    config = ScalingConfig(n_bootstrap=100)
    rng = np.random.default_rng(0)
    headroom = diagnose_curve("play", "metric", SIZES, _noisy_users(rng, noise=0.02), True, config)
    assert headroom["verdict"] == "headroom" and headroom["gain_10x"]["relative"] > 0.02
    assert headroom["gain_10x"]["relative_lower"] <= headroom["gain_10x"]["relative"] <= headroom["gain_10x"]["relative_upper"]
    flat_tail = 0.30 - 0.2 * (SIZES / 1e5) ** -2.0  # saturated after the first size
    saturated = diagnose_curve("add", "metric", SIZES, flat_tail[None, :], False, config)
    assert saturated["verdict"] == "saturated" and "no per-user rows" in saturated["reason"]


@pytest.mark.parametrize("values, words", [
    (np.full(5, 0.2), "flat"),
    (curve(SIZES)[::-1].copy(), "does not improve"),
    (np.array([0.1, 0.2, np.nan, np.nan, np.nan]), "2 usable size(s)"),
    (np.array([np.nan] * 5), "0 usable"),
])
def test_degenerate_inputs_are_insufficient_data(values, words):
    result = diagnose_curve("play", "metric", SIZES, values[None, :], False, ScalingConfig())
    assert result["verdict"] == "insufficient-data" and words in result["reason"]


def test_two_sizes_from_a_results_file(tmp_path):
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["size", "task", "metric"])
        w.writerows([[1e5, "play", 0.1], [1e6, "play", 0.2]])
    result = diagnose_scaling([str(path)], str(tmp_path / "out"))
    assert result["verdicts"]["play"]["verdict"] == "insufficient-data"


def _model_dir(root, size, users, rng, tasks=("play", "add")):
    os.makedirs(root)
    rows = []
    for task in tasks:
        mean = curve([size], alpha=0.35 if task == "play" else 0.05)[0]
        for u in range(users):
            rows.append({"user_id": f"u{u}", "task": task, "mrr": float(mean + rng.normal(0, 0.03)),
                         "loss": float(3.0 + (size / 1e5) ** -0.3 + rng.normal(0, 0.05)), "n": 3})
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(root, "validation_per_user.parquet"))
    with open(os.path.join(root, "metrics.json"), "w") as fh:
        json.dump({"preset": str(size), "num_params": int(size), "tokens": 1, "steps": 1, "tasks": {}}, fh)
    return str(root)


def test_diagnose_model_dirs_writes_json_png_html(tmp_path):
    rng = np.random.default_rng(1)
    runs = [_model_dir(tmp_path / f"m{i}", s, 60, rng) for i, s in enumerate(SIZES[:4])]
    result = diagnose_scaling(runs, str(tmp_path / "out"), ScalingConfig(n_bootstrap=100))
    saved = json.loads((tmp_path / "out" / "scaling.json").read_text())
    assert saved["verdicts"] == result["verdicts"]
    assert result["verdicts"]["play"]["verdict"] == "headroom"
    assert result["verdicts"]["add"]["verdict"] in ("saturated", "headroom")
    assert result["summary"]["add"]["alpha"] < result["summary"]["play"]["alpha"]  # planted 0.05 vs 0.35
    fits = {(f["task"], f["quantity"]): f for f in saved["fits"]}
    assert set(fits) == {("play", "metric"), ("play", "loss"), ("add", "metric"), ("add", "loss")}
    play = fits[("play", "metric")]
    assert play["params"]["alpha"]["lower"] <= play["params"]["alpha"]["value"] <= play["params"]["alpha"]["upper"]
    assert play["gain_10x"]["lower"] <= play["gain_10x"]["value"] <= play["gain_10x"]["upper"]
    assert fits[("play", "loss")]["verdict"] in ("headroom", "saturated")
    assert (tmp_path / "out" / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "out" / "scaling.html").read_text()
    assert "data:image/png;base64," in page and "headroom" in page


def test_json_results_with_users_and_missing_runs(tmp_path):
    rng = np.random.default_rng(2)
    rows = [{"size": float(s), "task": "play", "metric": float(v), "user_id": f"u{u}"}
            for u, user_values in enumerate(_noisy_users(rng, n_users=50, noise=0.02)) for s, v in zip(SIZES, user_values)]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"rows": rows}))
    result = diagnose_scaling([str(path)], str(tmp_path / "out"), ScalingConfig(n_bootstrap=50))
    assert result["verdicts"]["play"]["verdict"] == "headroom"
    assert result["fits"][0]["bootstrap"]["replicates"] == 50
    with pytest.raises(InputError, match="neither a model folder"):
        from genrec.scaling import load_observations
        load_observations([str(tmp_path / "nope")])
    broken = diagnose_scaling([str(tmp_path / "nope")], str(tmp_path / "out2"))
    assert broken["verdicts"]["*"]["verdict"] == "insufficient-data" and "nope" in broken["verdicts"]["*"]["reason"]
