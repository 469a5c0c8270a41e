"""KFP interface of the shadow evaluation and promotion decision (genrec.shadow)."""
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def shadow_eval(
    sequences: Input[Dataset],
    embeddings: Input[Dataset],
    candidate: Input[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
    report_md: Output[Markdown],
    registry_uri: str = "",
    delays: list = [0, 1, 2],
    min_gain: float = 0.0,
    tolerance: float = 0.02,
    primary_task: str = "",
) -> str:
    """Replay the shadow window; candidate vs champion (or popularity); returns "promote" or "hold".

    A plain `str` return (not a NamedTuple) because kfp.local 2.17 resolves a dsl.If on a named output
    as a pipeline input and always skips the branch; the single output is called "Output"."""
    import os
    import shutil
    import tempfile

    from genrec.shadow import ShadowConfig, shadow_evaluate
    from genrec.steps import champion_model, log_metrics

    config = ShadowConfig(delays=tuple(int(d) for d in delays), min_gain=min_gain, tolerance=tolerance,
                          primary_task=primary_task or None)
    with champion_model(registry_uri) as champion, \
            tempfile.TemporaryDirectory(prefix="shadow-") as out:  # the reports live on in the artifacts
        result = shadow_evaluate(sequences.path, candidate.path, out, config,
                                 baseline_dir=champion.local_dir if champion else None,
                                 embeddings_path=embeddings.path)
        shutil.copyfile(os.path.join(out, "shadow.json"), evaluation.path)
        shutil.copyfile(os.path.join(out, "shadow.html"), report.path)
        shutil.copyfile(os.path.join(out, "shadow.md"), report_md.path)
    log_metrics(metrics, result)
    evaluation.metadata.update({"decision": result["decision"], "baseline": result.get("baseline", "")})
    return result["decision"]
