"""`genrec` command line: every pipeline step on local paths, and the pipeline itself (run, compile).

Heavy imports (torch, Beam, KFP) happen inside the commands so `genrec --help` stays instant. The
KFP-facing commands import `pipelines`, which lives beside the core library; the core never imports KFP.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import click

from genrec.errors import GenrecError

log = logging.getLogger("genrec")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _echo_json(result: dict) -> None:
    click.echo(json.dumps(result, indent=2, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """genrec: retraining pipeline for large generative recommenders."""
    _setup_logging(verbose)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


# --- built-in data ------------------------------------------------------------------------------
@cli.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--users", default=1500, show_default=True)
@click.option("--titles", default=800, show_default=True)
@click.option("--events-per-user", default=80.0, show_default=True)
@click.option("--days", default=60, show_default=True)
@click.option("--seed", default=7, show_default=True)
def synth(out_dir: str, users: int, titles: int, events_per_user: float, days: int, seed: int) -> None:
    """Generate the built-in data set (events.parquet, titles.parquet) with planted structure."""
    from genrec.synth import SynthConfig, generate, write

    data = generate(SynthConfig(users=users, titles=titles, events_per_user=events_per_user, days=days, seed=seed))
    paths = write(data, out_dir)
    _echo_json({"events": data.events.num_rows, "titles": data.titles.num_rows, "files": paths})


# --- the steps, one by one ----------------------------------------------------------------------
@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--events", "events_uri", required=True, help="Events file, folder or glob (local or gs://).")
@click.option("--titles", "titles_uri", default=None, help="Title metadata, when not beside the events.")
@click.option("--out", "out_dir", required=True, help="Output folder (local or gs://).")
@click.option("--shadow-days", default=7.0, show_default=True)
@click.option("--validation-days", default=7.0, show_default=True)
@click.option("--max-len", default=200, show_default=True)
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
def extract(events_uri, titles_uri, out_dir, shadow_days, validation_days, max_len, beam_args) -> None:
    """Beam: events -> per-user sequences, splits, vocabulary, statistics, dead-letter.

    Beam options go after `--`, e.g. `-- --runner DataflowRunner --project P --region R`."""
    from genrec.sequences import ExtractConfig, extract_sequences

    config = ExtractConfig(shadow_days=shadow_days, validation_days=validation_days, max_len=max_len)
    _echo_json(extract_sequences(events_uri, out_dir, config, titles_uri=titles_uri, beam_args=list(beam_args)))


@cli.command()
@click.option("--sequences", "sequences_dir", required=True, help="Output folder of `genrec extract`.")
@click.option("--out", "out_path", required=True, help="Embeddings Parquet file to write.")
@click.option("--encoder", type=click.Choice(["minilm", "hashing"]), default="minilm", show_default=True)
@click.option("--cache", "cache_path", default=None, help="Earlier embeddings: unchanged titles are reused.")
def embed(sequences_dir: str, out_path: str, encoder: str, cache_path: str | None) -> None:
    """Title metadata -> vectors (all-MiniLM-L6-v2, offline), keyed by content hash."""
    from genrec.events import TITLES_FILE
    from genrec.semantic import EmbedConfig, embed_metadata

    _echo_json(embed_metadata(os.path.join(sequences_dir, TITLES_FILE), out_path, EmbedConfig(encoder=encoder),
                              cache_path=cache_path))


@cli.command()
@click.option("--sequences", "sequences_dir", required=True)
@click.option("--embeddings", "embeddings_path", default=None)
@click.option("--out", "out_dir", required=True, help="Model folder to write.")
@click.option("--preset", default="200K", show_default=True)
@click.option("--steps", "max_steps", default=150, show_default=True)
@click.option("--mtp-depth", default=0, show_default=True, help="Extra heads for targets 1..k steps ahead.")
@click.option("--cold-start-days", default=7.0, show_default=True,
              help="New-title masking: a title's first N days train its metadata-only scoring (0: off).")
@click.option("--tower-combine", type=click.Choice(["sum", "fallback"]), default="sum", show_default=True,
              help="Where the metadata MLP counts: every title (sum) or only titles without an ID part (fallback).")
@click.option("--optimizer", type=click.Choice(["auto", "adamw", "muon"]), default="auto", show_default=True,
              help="muon: Muon for the blocks' and head's weight matrices (more per step), AdamW for the rest; "
                   "auto: muon unless FSDP shards the model, adamw then.")
@click.option("--nproc", default=1, show_default=True, help="torchrun processes on this machine.")
@click.option("--members", default=1, show_default=True,
              help="Independent models trained side by side (nproc / members processes each, at least one) "
                   "and scored as one, by the mean of their logits.")
@click.option("--warm-start", "warm_start_dir", default=None, help="Model folder to warm-start from.")
@click.option("--config", "config_json", default=None,
              help='Any other TrainConfig fields as a JSON object, e.g. \'{"precision": "bf16", "lr": 0.001}\'; '
                   "its fields win over the flags above.")
def train(sequences_dir, embeddings_path, out_dir, preset, max_steps, mtp_depth, cold_start_days, tower_combine,
          optimizer, nproc, members, warm_start_dir, config_json) -> None:
    """Train a generative recommender through torchrun (gloo on CPU, nccl on GPU)."""
    import dataclasses

    from genrec.training import TrainConfig, launch_training

    fields = dict(preset=preset, max_steps=max_steps, mtp_depth=mtp_depth, mask_new_days=cold_start_days,
                  tower_combine=tower_combine, optimizer=optimizer, members=members)
    if config_json:
        try:
            extra = json.loads(config_json)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--config") from exc
        if not isinstance(extra, dict):
            raise click.BadParameter("must be a JSON object of TrainConfig fields", param_hint="--config")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        if set(extra) - known:
            raise click.BadParameter(f"unknown TrainConfig fields {sorted(set(extra) - known)} "
                                     f"(known: {', '.join(sorted(known))})", param_hint="--config")
        fields.update(extra)
    config = TrainConfig(**fields)
    _echo_json(launch_training(sequences_dir, out_dir, config, embeddings_path=embeddings_path,
                               warm_start_dir=warm_start_dir, nproc=nproc))


@cli.command()
@click.option("--runs", "run_dirs", multiple=True, help="Model folders of a size sweep (repeat).")
@click.option("--results", "results_path", default=None, help="CSV/JSON of (size, task, metric) rows.")
@click.option("--out", "out_dir", required=True)
def diagnose(run_dirs: tuple[str, ...], results_path: str | None, out_dir: str) -> None:
    """Offset scaling-law fit per task: saturated / headroom / insufficient-data, plot and report."""
    from genrec.scaling import diagnose_scaling

    runs = list(run_dirs) + ([results_path] if results_path else [])
    if not runs:
        raise click.UsageError("give --runs (one or more model folders) or --results FILE")
    _echo_json(diagnose_scaling(runs, out_dir))


@cli.command()
@click.option("--sequences", "sequences_dir", required=True)
@click.option("--candidate", "candidate_dir", required=True, help="Model folder to evaluate.")
@click.option("--baseline", "baseline_dir", default=None, help="Baseline model folder (default: champion).")
@click.option("--registry", "registry_uri", default=None, help="Registry whose champion is the baseline.")
@click.option("--embeddings", "embeddings_path", default=None)
@click.option("--out", "out_dir", required=True)
@click.option("--delays", default="0,1,2", show_default=True, help="Cached-serving delays, comma-separated.")
@click.option("--min-gain", default=0.0, show_default=True)
@click.option("--tolerance", default=0.02, show_default=True)
@click.option("--primary-task", default=None)
def evaluate(sequences_dir, candidate_dir, baseline_dir, registry_uri, embeddings_path, out_dir, delays,
             min_gain, tolerance, primary_task) -> None:
    """Shadow evaluation: replay the held-out window, candidate vs baseline MRR, promote/hold decision."""
    from genrec.shadow import ShadowConfig, shadow_evaluate
    from genrec.steps import champion_model

    config = ShadowConfig(delays=tuple(int(d) for d in delays.split(",")), min_gain=min_gain,
                          tolerance=tolerance, primary_task=primary_task)
    with champion_model(registry_uri if baseline_dir is None else "") as champion:
        result = shadow_evaluate(sequences_dir, candidate_dir, out_dir, config,
                                 baseline_dir=champion.local_dir if champion else baseline_dir,
                                 embeddings_path=embeddings_path)
    click.echo(f"decision: {result['decision']}")
    for reason in result.get("reasons", []):
        click.echo(f"  - {reason}")


@cli.command()
@click.option("--registry", "registry_uri", required=True)
@click.option("--candidate", "candidate_dir", required=True)
@click.option("--evaluation", "evaluation_path", required=True, help="shadow.json from `genrec evaluate`.")
@click.option("--run-id", default=None, help="Default: a timestamp.")
def promote(registry_uri: str, candidate_dir: str, evaluation_path: str, run_id: str | None) -> None:
    """Publish the candidate and swap the champion pointer (only when the evaluation says promote)."""
    from genrec.registry import promote as run_promote

    _echo_json(run_promote(registry_uri, candidate_dir, evaluation_path, run_id or time.strftime("run-%Y%m%d-%H%M%S")))


@cli.command()
@click.option("--registry", "registry_uri", required=True)
def champion(registry_uri: str) -> None:
    """Show the current champion pointer."""
    from genrec.registry import Registry

    pointer = Registry(registry_uri).champion()
    if pointer is None:
        click.echo(f"no champion in {registry_uri}")
    else:
        _echo_json(pointer)


@cli.command()
@click.option("--registry", "registry_uri", required=True)
def rollback(registry_uri: str) -> None:
    """Restore the previous champion (compare-and-swap, like promotion)."""
    from genrec.registry import Registry

    _echo_json(Registry(registry_uri).rollback())


# --- the pipeline -------------------------------------------------------------------------------
def _run_options(func):
    for option in reversed([
        click.option("--titles", "titles_uri", default="", help="Title metadata, when not beside the events."),
        click.option("--train-preset", default=None, help="Candidate backbone size (default: pipeline's)."),
        click.option("--train-steps", default=None, type=int),
        click.option("--sweep-presets", default=None, help="Comma-separated backbone sizes for the scaling sweep."),
        click.option("--sweep-steps", default=None, type=int),
        click.option("--encoder", default=None, type=click.Choice(["minilm", "hashing"])),
        click.option("--param", "params", multiple=True, help="Any other pipeline parameter, KEY=VALUE (JSON)."),
    ]):
        func = option(func)
    return func


def _pipeline_arguments(events_uri, registry_uri, titles_uri, train_preset, train_steps, sweep_presets,
                        sweep_steps, encoder, params) -> dict:
    args = {"events_uri": events_uri, "registry_uri": registry_uri, "titles_uri": titles_uri or ""}
    optional = {"train_preset": train_preset, "train_steps": train_steps, "sweep_steps": sweep_steps,
                "encoder": encoder,
                "sweep_presets": [p.strip() for p in sweep_presets.split(",")] if sweep_presets else None}
    args.update({k: v for k, v in optional.items() if v is not None})
    from pipelines.deploy import parse_params

    args.update(parse_params(params))
    return args


@cli.command()
@click.option("--events", "events_uri", required=True, help="Events file, folder or glob.")
@click.option("--registry", "registry_uri", required=True, help="Champion registry (local path or gs://).")
@click.option("--workdir", default="runs/local", show_default=True, help="Where kfp.local writes artifacts.")
@_run_options
def run(events_uri, registry_uri, workdir, **options) -> None:
    """Run the whole retraining DAG locally through kfp.local (SubprocessRunner)."""
    from pipelines.local import run_local

    arguments = _pipeline_arguments(events_uri, os.path.abspath(registry_uri), **options)
    summary = run_local(arguments, workdir)
    _print_summary(summary)


@cli.command()
@click.option("--workdir", default="runs/demo", show_default=True)
@click.option("--users", default=1000, show_default=True)
@click.option("--titles", "n_titles", default=600, show_default=True)
@_run_options
def demo(workdir: str, users: int, n_titles: int, **options) -> None:
    """Built-in data -> the whole DAG locally. Run it twice: the second run's baseline is the first's champion."""
    from pipelines.local import run_local
    from genrec.synth import SynthConfig, generate, write

    started = time.perf_counter()
    data_dir = os.path.join(workdir, "data")
    if not os.path.exists(os.path.join(data_dir, "events.parquet")):
        click.echo(f"generating built-in data in {data_dir}")
        write(generate(SynthConfig(users=users, titles=n_titles)), data_dir)
    arguments = _pipeline_arguments(os.path.abspath(data_dir), os.path.abspath(os.path.join(workdir, "registry")),
                                    **options)
    summary = run_local(arguments, os.path.join(workdir, "runs"))
    _print_summary(summary)
    click.echo(f"demo wall time: {time.perf_counter() - started:.0f} s")


def _print_summary(summary: dict) -> None:
    click.echo(f"\nrun: {summary['run_dir']}")
    for task, outputs in summary["artifacts"].items():
        click.echo(f"  {task}:")
        for name, path in outputs.items():
            click.echo(f"    {name}: {path}")
    ev = summary.get("evaluation") or {}
    primary = ev.get("primary") or {}
    if primary:
        click.echo(f"\nshadow MRR ({primary.get('task')}, delay {primary.get('delay')}): candidate "
                   f"{primary.get('candidate_mrr', float('nan')):.4f} vs baseline {primary.get('baseline_mrr', float('nan')):.4f} "
                   f"({ev.get('baseline', '')}); diff {primary.get('diff', float('nan')):+.4f} "
                   f"[{primary.get('lower', float('nan')):+.4f}, {primary.get('upper', float('nan')):+.4f}]")
    click.echo(f"decision: {ev.get('decision', 'unknown')}" + (f" ({'; '.join(ev.get('reasons', []))})" if ev.get('reasons') else ""))
    click.echo(f"champion: {summary.get('champion') or 'none'}")
    if summary.get("report"):
        click.echo(f"report (open in a browser): {summary['report']}")


@cli.command("compile")
@click.option("--out", "out_path", default="pipelines/genrec_retraining.yaml", show_default=True)
@click.option("--cpu-image", default=None, help="Image for Beam, embedding, evaluation and promotion steps.")
@click.option("--trainer-image", default=None, help="CUDA image for the training steps.")
@click.option("--train-accelerator", default="", help="e.g. NVIDIA_TESLA_A100 (empty: CPU).")
@click.option("--train-gpus", default=0, show_default=True)
@click.option("--sweep-parallelism", default=4, show_default=True)
def compile_cmd(out_path, cpu_image, trainer_image, train_accelerator, train_gpus, sweep_parallelism) -> None:
    """Write the pipeline's YAML IR (every parameter documented in it)."""
    import dataclasses

    from pipelines.retraining import PipelineImages, PipelineOptions, compile_pipeline

    images = PipelineImages()
    images = dataclasses.replace(images, **{k: v for k, v in {"cpu": cpu_image, "trainer": trainer_image}.items() if v})
    options = PipelineOptions(images=images, sweep_parallelism=sweep_parallelism,
                              train_accelerator=train_accelerator, train_gpus=train_gpus)
    click.echo(compile_pipeline(out_path, options))


def _backend_options(func):
    """Options shared by `submit` and `schedule` (Kubeflow or Vertex AI)."""
    for option in reversed([
        click.option("--backend", type=click.Choice(["kubeflow", "vertex"]), required=True),
        click.option("--package", "package_path", default="pipelines/genrec_retraining.yaml", show_default=True,
                     help="Compiled pipeline from `genrec compile`."),
        click.option("--param", "params", multiple=True, help="Pipeline parameter NAME=VALUE (JSON values parsed)."),
        click.option("--host", default=None, help="Kubeflow: KFP API host (default $KF_PIPELINES_ENDPOINT)."),
        click.option("--experiment", default="genrec", show_default=True, help="Kubeflow experiment."),
        click.option("--namespace", default=None, help="Kubeflow namespace (multi-user)."),
        click.option("--project", default=None, help="Vertex: Google Cloud project."),
        click.option("--location", default="us-central1", show_default=True, help="Vertex region."),
        click.option("--pipeline-root", default=None, help="Where the run's artifacts go (gs:// on Vertex)."),
        click.option("--service-account", default=None, help="Identity the run executes as."),
    ]):
        func = option(func)
    return func


def _require(value, flag: str, backend: str):
    if not value:
        raise click.UsageError(f"{flag} is required with --backend {backend}")
    return value


@cli.command()
@_backend_options
@click.option("--run-name", default=None, help="Default: retrain-<timestamp>.")
@click.option("--caching/--no-caching", default=None, help="Override every step's caching setting.")
def submit(backend, package_path, params, host, experiment, namespace, project, location, pipeline_root,
           service_account, run_name, caching) -> None:
    """Submit one run of the compiled pipeline to Kubeflow Pipelines or Vertex AI Pipelines."""
    import dataclasses

    from pipelines import deploy

    name = run_name or time.strftime("retrain-%Y%m%d-%H%M%S")
    values = deploy.parse_params(params)
    if backend == "kubeflow":
        result = deploy.submit_kubeflow(package_path, host, experiment, name, values, namespace=namespace,
                                        enable_caching=caching, pipeline_root=pipeline_root,
                                        service_account=service_account)
    else:
        result = deploy.submit_vertex(package_path, _require(project, "--project", backend), location,
                                      _require(pipeline_root, "--pipeline-root", backend), name, values,
                                      service_account=service_account, enable_caching=caching)
    _echo_json(dataclasses.asdict(result))


@cli.command()
@_backend_options
@click.option("--name", "job_name", default="genrec-weekly-retraining", show_default=True)
@click.option("--cron", required=True, help='5-field cron, e.g. "0 3 * * 1" (Kubeflow gets the 6-field form).')
def schedule(backend, package_path, params, host, experiment, namespace, project, location, pipeline_root,
             service_account, job_name, cron) -> None:
    """Create or replace a recurring retraining run (caching off: fresh data every time)."""
    import dataclasses

    from pipelines import deploy

    values = deploy.parse_params(params)
    if backend == "kubeflow":
        result = deploy.schedule_kubeflow(package_path, host, experiment, job_name, cron, values,
                                          namespace=namespace, pipeline_root=pipeline_root,
                                          service_account=service_account)
    else:
        result = deploy.schedule_vertex(package_path, _require(project, "--project", backend), location,
                                        _require(pipeline_root, "--pipeline-root", backend), job_name, cron,
                                        values, service_account=service_account)
    _echo_json(dataclasses.asdict(result))


@cli.command()
@click.option("--run-dir", required=True, help="A kfp.local run folder, or its pipeline root (newest run).")
@click.option("--out", "out_path", default=None, help="Default: <run-dir>/report.html.")
@click.option("--package", "package_path", default=None, help="Compiled pipeline: lists steps that did not run.")
def report(run_dir: str, out_path: str | None, package_path: str | None) -> None:
    """One self-contained HTML page of a local run: every step, its metrics, reports, plots, decision."""
    from genrec.report import build_report

    click.echo(build_report(run_dir, out_path or os.path.join(run_dir, "report.html"), package_path=package_path))


def main() -> None:
    """Console entry point: a user-facing error is one line, never a traceback."""
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except GenrecError as exc:
        click.echo(f"genrec: error: {exc}", err=True)
        sys.exit(2)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        click.echo(f"genrec: error: {exc.filename or ''}: {exc.strerror or exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
