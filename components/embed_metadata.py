"""KFP interface of the metadata embedding step; the work is genrec.semantic.embed_metadata."""
from kfp.dsl import Dataset, Input, Metrics, Output


def embed_metadata(
    sequences: Input[Dataset],
    embeddings: Output[Dataset],
    metrics: Output[Metrics],
    registry_uri: str = "",
    encoder: str = "minilm",
):
    """Title metadata -> MiniLM vectors keyed by content hash; the registry keeps them across runs."""
    import os

    from genrec.events import TITLES_FILE
    from genrec.semantic import EmbedConfig, embed_metadata as run, update_cache
    from genrec.steps import embedding_cache_uri, log_metrics

    cache_uri = embedding_cache_uri(registry_uri) if registry_uri else None
    result = run(os.path.join(sequences.path, TITLES_FILE), embeddings.path, EmbedConfig(encoder=encoder),
                 cache_path=cache_uri)
    if cache_uri:
        update_cache(embeddings.path, cache_uri)
    log_metrics(metrics, result)
    embeddings.metadata.update(result)
