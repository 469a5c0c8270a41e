"""The retraining DAG: wiring only, no logic.

extract_sequences -> embed_metadata -> train ---------------------> shadow_eval -> [If promote] promote
                                   \\-> ParallelFor(sweep presets): train -> diagnose_scaling
"""

from dataclasses import dataclass, field
from typing import List

from kfp import compiler, dsl, kubernetes

from components import PipelineImages, build_components

PIPELINE_NAME = "genrec-retraining"
PROMOTE = "promote"  # genrec.shadow's decision value that lets promotion run


@dataclass(frozen=True)
class PipelineOptions:
    """Compile-time settings (KFP needs these as constants, not run parameters)."""

    images: PipelineImages = field(default_factory=PipelineImages)
    sweep_parallelism: int = 4
    train_accelerator: str = ""  # e.g. "NVIDIA_TESLA_A100"; empty trains on CPU
    train_gpus: int = 0
    train_cpu: str = "8"
    train_memory: str = "32G"
    step_timeout_s: int = 6 * 3600


def build_pipeline(options: PipelineOptions = PipelineOptions()):
    """Returns the @dsl.pipeline function for these images and resources."""
    c = build_components(options.images)

    def _train_resources(task):
        task.set_cpu_limit(options.train_cpu).set_memory_limit(options.train_memory)
        if options.train_accelerator and options.train_gpus:
            task.set_accelerator_type(options.train_accelerator).set_accelerator_limit(options.train_gpus)
        kubernetes.set_timeout(task, options.step_timeout_s)
        return task

    @dsl.pipeline(name=PIPELINE_NAME, description=__doc__.splitlines()[0])
    def retraining_pipeline(
        events_uri: str,
        registry_uri: str,
        titles_uri: str = "",
        shadow_days: float = 7.0,
        validation_days: float = 7.0,
        max_len: int = 200,
        beam_args: List[str] = [],
        encoder: str = "minilm",
        train_preset: str = "200K",
        train_steps: int = 150,
        mtp_depth: int = 0,
        cold_start_days: float = 7.0,
        tower_combine: str = "sum",
        optimizer: str = "auto",
        nproc: int = 1,
        train_members: int = 1,
        sweep_presets: List[str] = ["50K", "200K", "500K"],
        sweep_steps: int = 80,
        delays: List[int] = [0, 1, 2],
        min_gain: float = 0.0,
        tolerance: float = 0.02,
        primary_task: str = "",
    ):
        """Retrain a generative recommender and promote it only if it beats the champion on shadow MRR.

        Args:
            events_uri: events (file, folder or glob; local or gs://): canonical or MovieLens layouts.
            registry_uri: where the champion pointer, published models and the embedding cache live.
            titles_uri: title metadata when it is not beside the events.
            shadow_days: length of the final held-out window replayed by shadow evaluation.
            validation_days: length of the validation window before it.
            max_len: most recent events kept per user sequence.
            beam_args: Beam pipeline options passed through (e.g. --runner=DataflowRunner ...).
            encoder: metadata encoder (minilm or hashing).
            train_preset: backbone size of the candidate (e.g. 1M, 2M, 8M ... 1B).
            train_steps: optimizer steps for the candidate.
            mtp_depth: multi-token prediction heads (serving delays the model is aligned to).
            cold_start_days: new-title masking: a title's first days of events train the metadata-only
                scoring new titles get at serving (0: off).
            tower_combine: where the title-metadata MLP counts: "sum" (every title) or "fallback"
                (only titles without a trained ID part: better on warm titles, worse on cold start).
            optimizer: "auto" (Muon unless FSDP shards the model, then AdamW), "muon" (Muon for the
                blocks' and head's weight matrices, AdamW for the rest: more quality per step) or "adamw".
            nproc: torchrun processes per node for training.
            train_members: independent models trained side by side as the candidate and scored as one
                (the mean of their logits; nproc / train_members processes each). Sweep points stay single.
            sweep_presets: backbone sizes trained for the scaling-law diagnosis.
            sweep_steps: optimizer steps per sweep point (a fixed token budget).
            delays: cached-serving delays (in requests) evaluated in the shadow window.
            min_gain: lower CI bound of the primary task's MRR gain must exceed this to promote.
            tolerance: largest relative MRR loss allowed on any task.
            primary_task: task whose gain decides (empty: the most frequent event type).
        """
        extract = c.extract_sequences(
            events_uri=events_uri, titles_uri=titles_uri, shadow_days=shadow_days,
            validation_days=validation_days, max_len=max_len, beam_args=beam_args,
        ).set_display_name("extract sequences (Beam)")
        extract.set_retry(num_retries=2, backoff_duration="60s", backoff_factor=2.0)
        extract.set_cpu_limit("4").set_memory_limit("16G")

        embed = c.embed_metadata(
            sequences=extract.outputs["sequences"], registry_uri=registry_uri,
            encoder=encoder,
        ).set_display_name("embed title metadata")
        embed.set_retry(num_retries=2, backoff_duration="30s", backoff_factor=2.0)
        embed.set_cpu_limit("4").set_memory_limit("8G")

        candidate = _train_resources(c.train(
            sequences=extract.outputs["sequences"], embeddings=embed.outputs["embeddings"],
            preset=train_preset, max_steps=train_steps, mtp_depth=mtp_depth, cold_start_days=cold_start_days,
            tower_combine=tower_combine, optimizer=optimizer, nproc=nproc, members=train_members,
            registry_uri=registry_uri, warm_start=True,
        ).set_display_name("train candidate (torchrun)"))
        candidate.set_caching_options(False)

        with dsl.ParallelFor(items=sweep_presets, parallelism=options.sweep_parallelism) as preset:
            point = _train_resources(c.train(
                sequences=extract.outputs["sequences"], embeddings=embed.outputs["embeddings"],
                preset=preset, max_steps=sweep_steps, mtp_depth=mtp_depth, cold_start_days=cold_start_days,
                tower_combine=tower_combine, optimizer=optimizer, nproc=nproc, registry_uri="", warm_start=False,
            ).set_display_name("train sweep point"))
        scaling = c.diagnose_scaling(runs=dsl.Collected(point.outputs["model"]))
        scaling.set_display_name("diagnose scaling")

        shadow = c.shadow_eval(
            sequences=extract.outputs["sequences"], embeddings=embed.outputs["embeddings"],
            candidate=candidate.outputs["model"], registry_uri=registry_uri, delays=delays,
            min_gain=min_gain, tolerance=tolerance, primary_task=primary_task,
        ).set_display_name("shadow evaluation")
        shadow.set_cpu_limit("8").set_memory_limit("32G")
        shadow.after(scaling)  # a reviewer sees the scaling verdict before the decision
        shadow.set_caching_options(False)

        with dsl.If(shadow.outputs["Output"] == PROMOTE, name="promote-if-winner"):
            c.promote(
                candidate=candidate.outputs["model"], evaluation=shadow.outputs["evaluation"],
                registry_uri=registry_uri, run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            ).set_display_name("promote champion").set_caching_options(False)

    return retraining_pipeline


retraining_pipeline = build_pipeline()


def compile_pipeline(path: str, options: PipelineOptions | PipelineImages = PipelineOptions()) -> str:
    """Write the pipeline's YAML IR to `path` (deterministic for the same options)."""
    if isinstance(options, PipelineImages):
        options = PipelineOptions(images=options)
    compiler.Compiler().compile(build_pipeline(options), package_path=path)
    return path
