"""KFP interface of promotion: compare-and-swap of the champion pointer (genrec.registry)."""
from kfp.dsl import Artifact, Input, Markdown, Model, Output


def promote(
    candidate: Input[Model],
    evaluation: Input[Artifact],
    model_card: Output[Markdown],
    registry_uri: str,
    run_id: str,
) -> str:
    """Publish the candidate under a new versioned path and swap the champion pointer to it."""
    from genrec.registry import promote as run

    pointer = run(registry_uri, candidate.path, evaluation.path, run_id, model_card_path=model_card.path)
    return pointer["model_uri"]
