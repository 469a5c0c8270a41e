"""Scaling-law diagnosis: is a bigger backbone worth it, per task?

Per task we fit the offset power laws

    metric(N) = E - A * (N / n0) ** -alpha        (MRR rises towards the ceiling E)
    loss(N)   = E + A * (N / n0) ** -alpha        (loss falls towards the floor E)

over backbone sizes N (n0 = the smallest size keeps A on a sane scale), with A >= 0 and alpha in
`alpha_bounds`. For fixed alpha the model is linear in (E, A), so the fit profiles alpha over a
log-spaced grid with closed-form least squares (vectorised over bootstrap replicates), refines the
best grid point locally, and polishes the point fit with scipy's least_squares. Intervals come from
resampling validation users (the same users at every size, so replicates are paired) and refitting.

Verdict per task, from the predicted relative gain of 10x more parameters at the largest size:
`headroom` when it is at least `saturation_threshold`, `saturated` below it, `insufficient-data`
with fewer than `min_sizes` usable sizes, a metric that does not improve with size, or a failed fit.
Degenerate input never raises: it becomes that verdict with its reason.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from genrec.errors import ConfigError, InputError
from genrec.events import MODEL_METRICS_FILE

PER_USER_FILE = "validation_per_user.parquet"
HEADROOM, SATURATED, INSUFFICIENT = "headroom", "saturated", "insufficient-data"
JSON_FILE, PLOT_FILE, HTML_FILE = "scaling.json", "scaling.png", "scaling.html"


@dataclass(frozen=True)
class ScalingConfig:
    metric: str = "mrr"  # column of the per-user / results rows to fit
    n_bootstrap: int = 300  # user resamples (each a full refit)
    confidence: float = 0.9
    saturation_threshold: float = 0.02  # relative gain from 10x below this: saturated
    seed: int = 0
    min_sizes: int = 3
    alpha_bounds: tuple[float, float] = (1e-3, 3.0)
    grid_size: int = 240

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ConfigError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.n_bootstrap < 0 or self.min_sizes < 3 or self.grid_size < 10:
            raise ConfigError("n_bootstrap >= 0, min_sizes >= 3 and grid_size >= 10 are required")
        lo, hi = self.alpha_bounds
        if not 0 < lo < hi:
            raise ConfigError(f"alpha_bounds must satisfy 0 < low < high, got {self.alpha_bounds}")


# --- fitting ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fit:
    """metric(N) = E + sign * A * (N/n0)^-alpha, with sign -1 (rising metric) or +1 (falling loss)."""

    E: float
    A: float
    alpha: float
    n0: float
    sign: int
    rmse: float

    def predict(self, sizes: np.ndarray) -> np.ndarray:
        return self.E + self.sign * self.A * (np.asarray(sizes, float) / self.n0) ** -self.alpha


def _profile(x: np.ndarray, Y: np.ndarray, alphas: np.ndarray) -> tuple[np.ndarray, ...]:
    """Closed-form (E, A) for every replicate and candidate alpha, then the best alpha per replicate.

    x [S] sizes / n0; Y [B, S] values (already oriented so the curve rises: y = E - A z);
    alphas [B, G] or [G]. Returns (sse, E, A, alpha), each [B].
    """
    alphas = np.broadcast_to(alphas, (Y.shape[0], alphas.shape[-1]))
    Z = x[None, None, :] ** -alphas[..., None]  # [B, G, S]
    zc = Z - Z.mean(-1, keepdims=True)
    yc = Y - Y.mean(-1, keepdims=True)  # [B, S]
    cov = np.einsum("bgs,bs->bg", zc, yc)
    var = np.maximum((zc ** 2).sum(-1), 1e-300)
    slope = np.minimum(cov / var, 0.0)  # y = E + slope * z with A = -slope >= 0
    sse = (yc ** 2).sum(-1)[:, None] - np.where(cov < 0, cov ** 2 / var, 0.0)
    best = np.argmin(sse, axis=1)
    rows = np.arange(Y.shape[0])
    b_slope = slope[rows, best]
    b_E = Y.mean(-1) - b_slope * Z.mean(-1)[rows, best]
    return sse[rows, best], b_E, -b_slope, alphas[rows, best]


def fit_grid(sizes: np.ndarray, Y: np.ndarray, sign: int, config: ScalingConfig) -> tuple[np.ndarray, ...]:
    """Vectorised fit of B curves at once: Y [B, S] -> (E, A, alpha, sse) each [B].
    A coarse log grid over alpha, then a finer grid around each replicate's best point."""
    n0 = float(sizes.min())
    x = np.asarray(sizes, float) / n0
    Yr = -sign * Y  # orient so the curve rises (y = E' - A z)
    lo, hi = config.alpha_bounds
    grid = np.geomspace(lo, hi, config.grid_size)
    _, _, _, alpha = _profile(x, Yr, grid)
    step = (hi / lo) ** (1.0 / (config.grid_size - 1))
    fine = alpha[:, None] * np.geomspace(1 / step, step, 41)[None, :]
    sse, E, A, alpha = _profile(x, Yr, np.clip(fine, lo, hi))
    return -sign * E, A, alpha, sse


def fit_power_law(sizes: Sequence[float], values: Sequence[float], sign: int, config: ScalingConfig) -> Fit:
    """Least-squares offset power law through (size, value) points (profiled start, scipy polish)."""
    from scipy.optimize import least_squares

    sizes = np.asarray(sizes, float)
    values = np.asarray(values, float)
    n0 = float(sizes.min())
    E, A, alpha, _ = (float(v[0]) for v in fit_grid(sizes, values[None, :], sign, config))
    lo, hi = config.alpha_bounds
    x = sizes / n0
    scale = max(float(np.ptp(values)), 1e-12)

    def residuals(p: np.ndarray) -> np.ndarray:
        return (p[0] + sign * p[1] * x ** -p[2] - values) / scale

    if A > 0:
        start = np.array([E, A, min(max(alpha, lo * 1.0001), hi * 0.9999)])
        bounds = ([-np.inf, 0.0, lo], [np.inf, np.inf, hi])
        try:
            res = least_squares(residuals, start, bounds=bounds, method="trf", xtol=1e-15, ftol=1e-15,
                                gtol=1e-15, max_nfev=2000)
            if res.success and np.sum(res.fun ** 2) <= np.sum(residuals(start) ** 2):
                E, A, alpha = (float(v) for v in res.x)
        except (ValueError, np.linalg.LinAlgError):
            pass  # keep the profiled solution
    fit = Fit(E, A, alpha, n0, sign, 0.0)
    rmse = float(np.sqrt(np.mean((fit.predict(sizes) - values) ** 2)))
    return Fit(E, A, alpha, n0, sign, rmse)


def gain_10x(E: np.ndarray, A: np.ndarray, alpha: np.ndarray, n_max: float, n0: float, sign: int):
    """(absolute improvement, relative improvement) from n_max to 10 * n_max; improvement is a rise
    for a metric (sign -1) and a fall for a loss (sign +1), so both are positive when bigger helps."""
    at_max = A * (n_max / n0) ** -alpha
    improvement = at_max * (1.0 - 10.0 ** -alpha)
    current = E + sign * at_max
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(np.abs(current) > 0, improvement / np.abs(current), np.nan)
    return improvement, relative


# --- data -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Observations:
    """One task's data: per-unit values at each size (units are users when known)."""

    task: str
    sizes: np.ndarray  # [S] sorted backbone sizes
    metric: np.ndarray  # [U, S] (NaN where a unit has no value at a size)
    loss: np.ndarray | None  # [U, S] or None
    per_user: bool  # False: one aggregate value per size (no bootstrap possible)


def _rows_from_model_dir(path: str, metric: str) -> list[dict[str, Any]]:
    metrics_path = os.path.join(path, MODEL_METRICS_FILE)
    try:
        with open(metrics_path) as fh:
            summary = json.load(fh)
        size = float(summary["num_params"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise InputError(f"{metrics_path}: cannot read num_params ({type(err).__name__}: {err})") from None
    per_user = os.path.join(path, PER_USER_FILE)
    if os.path.exists(per_user):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(per_user).to_pylist()
        except Exception as err:
            raise InputError(f"{per_user}: unreadable ({type(err).__name__}: {err})") from None
        return [{"size": size, "task": r.get("task"), "metric": r.get(metric), "loss": r.get("loss"),
                 "user_id": r.get("user_id")} for r in table]
    return [{"size": size, "task": task, "metric": m.get(metric), "loss": m.get("loss"), "user_id": None}
            for task, m in (summary.get("tasks") or {}).items()]


def _rows_from_file(path: str, metric: str) -> list[dict[str, Any]]:
    try:
        if path.endswith(".json"):
            with open(path) as fh:
                data = json.load(fh)
            rows = data.get("rows", []) if isinstance(data, dict) else data
        else:
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
    except (OSError, json.JSONDecodeError, csv.Error, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read scaling results ({type(err).__name__}: {err})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{path}: expected a list of rows (size, task, {metric}[, loss][, user_id])")
    value_key = metric if rows and metric in rows[0] else "metric"
    out = []
    for i, r in enumerate(rows):
        if "size" not in r or "task" not in r or value_key not in r:
            raise InputError(f"{path}: row {i + 1} lacks size, task or {metric!r}/'metric'")
        out.append({"size": r["size"], "task": r["task"], "metric": r[value_key], "loss": r.get("loss"),
                    "user_id": r.get("user_id") or None})
    return out


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def load_observations(runs: Sequence[str], metric: str = "mrr") -> list[Observations]:
    """Model folders and/or CSV/JSON result files -> one Observations per task."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        if os.path.isdir(run):
            rows += _rows_from_model_dir(run, metric)
        elif os.path.isfile(run):
            rows += _rows_from_file(run, metric)
        else:
            raise InputError(f"{run}: neither a model folder nor a results file")
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_task.setdefault(str(r["task"]), []).append(r)
    out = []
    for task, task_rows in sorted(by_task.items()):
        sizes = np.array(sorted({_number(r["size"]) for r in task_rows if _number(r["size"]) > 0}))
        per_user = all(r.get("user_id") is not None for r in task_rows)
        units = sorted({str(r["user_id"]) for r in task_rows}) if per_user else ["aggregate"]
        u_index = {u: i for i, u in enumerate(units)}
        s_index = {s: i for i, s in enumerate(sizes.tolist())}
        total = {k: np.zeros((len(units), len(sizes))) for k in ("metric", "loss")}
        count = {k: np.zeros((len(units), len(sizes))) for k in ("metric", "loss")}
        for r in task_rows:
            size = _number(r["size"])
            if size not in s_index:
                continue
            u = u_index[str(r["user_id"])] if per_user else 0
            for key in ("metric", "loss"):
                v = _number(r.get(key))
                if math.isfinite(v):
                    total[key][u, s_index[size]] += v
                    count[key][u, s_index[size]] += 1
        with np.errstate(invalid="ignore"):
            mean = {k: np.where(count[k] > 0, total[k] / np.maximum(count[k], 1), np.nan) for k in total}
        has_loss = bool(np.isfinite(mean["loss"]).any())
        out.append(Observations(task, sizes, mean["metric"], mean["loss"] if has_loss else None, per_user))
    return out


# --- diagnosis --------------------------------------------------------------------------------------------
def _size_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[B, S] weighted means per size over units (weights [B, U] resample counts), NaN-aware."""
    have = np.isfinite(values)
    filled = np.where(have, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ filled) / (weights @ have.astype(float))


def _interval(samples: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:
        return None, None
    a = (1 - confidence) / 2
    lo, hi = np.quantile(samples, [a, 1 - a])
    return float(lo), float(hi)


def _clean(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def diagnose_curve(task: str, quantity: str, sizes: np.ndarray, values: np.ndarray, per_user: bool,
                   config: ScalingConfig) -> dict[str, Any]:
    """Fit, intervals, 10x gain and verdict for one task's metric or loss. values [U, S]."""
    sign = -1 if quantity == "metric" else 1
    ones = np.ones((1, values.shape[0]))
    point = _size_means(values, ones)[0]
    usable = np.isfinite(point)
    entry: dict[str, Any] = {"task": task, "quantity": quantity,
                             "name": config.metric if quantity == "metric" else "loss",
                             "sizes": sizes.tolist(), "values": [_clean(v) for v in point],
                             "n_units": int(values.shape[0]) if per_user else 0}

    def insufficient(reason: str) -> dict[str, Any]:
        return {**entry, "verdict": INSUFFICIENT, "reason": reason, "params": None, "gain_10x": None}

    if usable.sum() < config.min_sizes:
        return insufficient(f"{int(usable.sum())} usable size(s) with a finite {entry['name']}; "
                            f"at least {config.min_sizes} are needed")
    xs, ys, vals = sizes[usable], point[usable], values[:, usable]
    if np.ptp(ys) <= 1e-12 * max(1.0, float(np.abs(ys).max())):
        return insufficient(f"{entry['name']} is flat across sizes ({ys.min():.6g}); no power law to fit")
    try:
        fit = fit_power_law(xs, ys, sign, config)
    except Exception as err:  # a numerical failure is a verdict, not a crash
        return insufficient(f"fit failed: {type(err).__name__}: {err}")
    if not (fit.A > 0 and all(math.isfinite(v) for v in (fit.E, fit.A, fit.alpha))):
        direction = "improve" if quantity == "metric" else "fall"
        return insufficient(f"{entry['name']} does not {direction} with size (best fit has A = 0)")
    n_max = float(xs.max())
    gain, rel = (float(v) for v in gain_10x(np.array(fit.E), np.array(fit.A), np.array(fit.alpha), n_max,
                                             fit.n0, sign))
    params = {"E": {"value": fit.E}, "A": {"value": fit.A}, "alpha": {"value": fit.alpha}}
    gain_entry: dict[str, Any] = {"value": gain, "relative": rel, "at_size": n_max, "to_size": 10 * n_max,
                                  "predicted": float(fit.predict(np.array([10 * n_max]))[0])}
    notes = []
    boot_curves = None
    if per_user and config.n_bootstrap > 0 and vals.shape[0] > 1:
        rng = np.random.default_rng(config.seed)
        U = vals.shape[0]
        idx = rng.integers(0, U, size=(config.n_bootstrap, U))
        weights = np.zeros((config.n_bootstrap, U))
        np.add.at(weights, (np.repeat(np.arange(config.n_bootstrap), U), idx.ravel()), 1.0)
        Y = _size_means(vals, weights)
        ok = np.isfinite(Y).all(axis=1)
        E_b, A_b, alpha_b, _ = fit_grid(xs, np.where(ok[:, None], Y, 0.0), sign, config)
        g_b, r_b = gain_10x(E_b, A_b, alpha_b, n_max, fit.n0, sign)
        identified = ok & (A_b > 0)
        for name, samples in (("E", E_b), ("A", A_b), ("alpha", alpha_b)):
            params[name]["lower"], params[name]["upper"] = _interval(samples[identified], config.confidence)
        gain_entry["lower"], gain_entry["upper"] = _interval(np.where(A_b > 0, g_b, 0.0)[ok], config.confidence)
        gain_entry["relative_lower"], gain_entry["relative_upper"] = _interval(np.where(A_b > 0, r_b, 0.0)[ok],
                                                                               config.confidence)
        entry["bootstrap"] = {"replicates": int(config.n_bootstrap), "identified": int(identified.sum())}
        grid = np.geomspace(xs.min() / 2, 10 * n_max, 60)
        curves = E_b[identified, None] + sign * A_b[identified, None] * (grid[None, :] / fit.n0) ** -alpha_b[identified, None]
        if len(curves):
            a = (1 - config.confidence) / 2
            boot_curves = (grid, np.quantile(curves, a, axis=0), np.quantile(curves, 1 - a, axis=0))
    else:
        notes.append("no per-user rows: no confidence intervals")
    if fit.alpha <= config.alpha_bounds[0] * 1.01:
        notes.append("alpha at its lower bound: no saturation visible yet, E is not identified")
    if fit.alpha >= config.alpha_bounds[1] * 0.99:
        notes.append("alpha at its upper bound: the curve has already flattened")
    threshold = config.saturation_threshold
    rel_lo, rel_hi = gain_entry.get("relative_lower"), gain_entry.get("relative_upper")
    ci_text = f" ({config.confidence:.0%} CI [{rel_lo:+.2%}, {rel_hi:+.2%}])" if rel_lo is not None else ""
    verdict = HEADROOM if rel >= threshold else SATURATED
    word = "at least" if verdict == HEADROOM else "below"
    reason = (f"10x more parameters ({n_max:.3g} -> {10 * n_max:.3g}) is predicted to improve {entry['name']} by "
              f"{rel:+.2%}{ci_text}, {word} the {threshold:.1%} threshold")
    if rel_lo is not None and rel_lo < threshold <= rel_hi:
        reason += "; the interval straddles the threshold, so the verdict is uncertain"
    if notes:
        reason += "; " + "; ".join(notes)
    entry.update(params=params, n0=fit.n0, rmse=fit.rmse, gain_10x=gain_entry, verdict=verdict, reason=reason)
    entry["_band"] = boot_curves
    entry["_fit"] = fit
    return entry


def diagnose_scaling(runs: Sequence[str], out_dir: str, config: ScalingConfig = ScalingConfig()) -> dict[str, Any]:
    """Fit every task's metric (and loss) against backbone size; write scaling.json/.png/.html.

    runs: model folders (metrics.json with num_params, validation_per_user.parquet) and/or CSV/JSON
    files of (size, task, metric[, loss][, user_id]) rows.
    """
    os.makedirs(out_dir, exist_ok=True)
    try:
        observations = load_observations(runs, config.metric)
    except InputError as err:
        observations, load_error = [], str(err)
    else:
        load_error = None
    fits = []
    for obs in observations:
        fits.append(diagnose_curve(obs.task, "metric", obs.sizes, obs.metric, obs.per_user, config))
        if obs.loss is not None:
            fits.append(diagnose_curve(obs.task, "loss", obs.sizes, obs.loss, obs.per_user, config))
    verdicts = {f["task"]: {"verdict": f["verdict"], "reason": f["reason"]} for f in fits if f["quantity"] == "metric"}
    summary = {}
    for f in fits:
        if f["quantity"] == "metric" and f["params"]:
            summary[f["task"]] = {"alpha": f["params"]["alpha"]["value"], "gain_10x": f["gain_10x"]["value"],
                                  "relative_gain_10x": f["gain_10x"]["relative"],
                                  "headroom": 1.0 if f["verdict"] == HEADROOM else 0.0}
    result = {"config": asdict(config), "runs": list(runs), "verdicts": verdicts, "summary": summary,
              "fits": [{k: v for k, v in f.items() if not k.startswith("_")} for f in fits]}
    if load_error:
        result["error"] = load_error
        result["verdicts"] = {"*": {"verdict": INSUFFICIENT, "reason": load_error}}
    elif not fits:
        result["verdicts"] = {"*": {"verdict": INSUFFICIENT, "reason": "no rows in the given runs"}}
    with open(os.path.join(out_dir, JSON_FILE), "w") as fh:
        json.dump(result, fh, indent=2)
    png = plot(fits, config)
    with open(os.path.join(out_dir, PLOT_FILE), "wb") as fh:
        fh.write(png)
    with open(os.path.join(out_dir, HTML_FILE), "w") as fh:
        fh.write(render_html(result, png))
    return result


# --- reports ----------------------------------------------------------------------------------------------
def plot(fits: Sequence[dict[str, Any]], config: ScalingConfig) -> bytes:
    """PNG bytes: one panel per task and quantity, points, fitted curve, bootstrap band, 10x point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({f["task"] for f in fits}) or ["(no data)"]
    columns = 2 if any(f["quantity"] == "loss" for f in fits) else 1
    fig, axes = plt.subplots(len(tasks), columns, figsize=(5.5 * columns, 3.6 * len(tasks)), squeeze=False)
    for f in fits:
        ax = axes[tasks.index(f["task"]), 0 if f["quantity"] == "metric" else 1]
        sizes = np.array(f["sizes"], float)
        values = np.array([np.nan if v is None else v for v in f["values"]], float)
        ax.scatter(sizes, values, color="black", zorder=3, label="runs")
        fit: Fit | None = f.get("_fit")
        if fit is not None:
            grid = np.geomspace(sizes.min() / 2, 10 * sizes.max(), 100)
            ax.plot(grid, fit.predict(grid), color="tab:blue", label=f"fit, alpha={fit.alpha:.3f}")
            ax.scatter([10 * sizes.max()], fit.predict(np.array([10 * sizes.max()])), marker="*", s=120,
                       color="tab:orange", zorder=4, label="10x prediction")
        if f.get("_band") is not None:
            grid, lo, hi = f["_band"]
            ax.fill_between(grid, lo, hi, color="tab:blue", alpha=0.2, label=f"{config.confidence:.0%} band")
        ax.set_xscale("log")
        ax.set_xlabel("backbone parameters")
        ax.set_ylabel(f["name"])
        ax.set_title(f"{f['task']}: {f['verdict']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:+.2%}" if pct else f"{value:.4g}"


def render_html(result: dict[str, Any], png: bytes) -> str:
    """Self-contained report: fits table + the plot as a base64 image (for the KFP UI)."""
    e = html.escape
    rows = []
    for f in result["fits"]:
        p = f.get("params") or {}
        g = f.get("gain_10x") or {}

        def ci(d: dict | None, pct: bool = False, lo: str = "lower", hi: str = "upper") -> str:
            if not d or d.get(lo) is None:
                return "-"
            return f"[{_fmt(d[lo], pct)}, {_fmt(d[hi], pct)}]"

        rows.append(
            f"<tr><td>{e(f['task'])}</td><td>{e(f['name'])}</td><td>{len(f['sizes'])}</td>"
            f"<td>{_fmt((p.get('E') or {}).get('value'))} {ci(p.get('E'))}</td>"
            f"<td>{_fmt((p.get('A') or {}).get('value'))} {ci(p.get('A'))}</td>"
            f"<td>{_fmt((p.get('alpha') or {}).get('value'))} {ci(p.get('alpha'))}</td>"
            f"<td>{_fmt(g.get('relative'), True)} {ci(g, True, 'relative_lower', 'relative_upper')}</td>"
            f"<td><b>{e(f['verdict'])}</b></td><td style='text-align:left'>{e(f['reason'])}</td></tr>")
    error = f"<p><b>Error:</b> {e(result['error'])}</p>" if result.get("error") else ""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Scaling diagnosis</title><style>"
            "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
            "<h1>Scaling diagnosis</h1><p>Fit per task: metric = E - A (N/n0)<sup>-alpha</sup> "
            "(loss = E + A (N/n0)<sup>-alpha</sup>); intervals by resampling validation users.</p>" + error +
            "<table><tr><th>task</th><th>quantity</th><th>sizes</th><th>E</th><th>A</th><th>alpha</th>"
            "<th>gain from 10x</th><th>verdict</th><th>reason</th></tr>" + "".join(rows) + "</table>"
            f"<p><img alt='scaling plot' src='data:image/png;base64,{base64.b64encode(png).decode()}'></p>"
            "</body></html>")
