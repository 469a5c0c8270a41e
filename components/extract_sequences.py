"""KFP interface of the Beam extraction step; the work is genrec.sequences.extract_sequences."""
from kfp.dsl import HTML, Dataset, Metrics, Output


def extract_sequences(
    events_uri: str,
    sequences: Output[Dataset],
    dead_letter: Output[Dataset],
    metrics: Output[Metrics],
    summary: Output[HTML],
    titles_uri: str = "",
    shadow_days: float = 7.0,
    validation_days: float = 7.0,
    max_len: int = 200,
    beam_args: list = [],
):
    """Events -> per-user time-ordered sequences split into train / validation / shadow windows."""
    import os
    import shutil

    from genrec.events import DEAD_LETTER_DIR
    from genrec.sequences import ExtractConfig, extract_sequences as run
    from genrec.statistics import SUMMARY_FILE
    from genrec.steps import log_metrics

    config = ExtractConfig(shadow_days=shadow_days, validation_days=validation_days, max_len=max_len)
    result = run(events_uri, sequences.path, config, titles_uri=titles_uri or None, beam_args=beam_args)
    shutil.copytree(os.path.join(sequences.path, DEAD_LETTER_DIR), dead_letter.path, dirs_exist_ok=True)
    shutil.copyfile(os.path.join(sequences.path, SUMMARY_FILE), summary.path)
    log_metrics(metrics, result)
    sequences.metadata.update({"users": result.get("users", {}), "items": result.get("items")})
    dead_letter.metadata["rows"] = sum(result.get("dead_letter", {}).values())
