"""KFP interface of the training step: runs torchrun inside the container (genrec.training)."""
from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train(
    sequences: Input[Dataset],
    embeddings: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    preset: str = "200K",
    max_steps: int = 150,
    mtp_depth: int = 0,
    cold_start_days: float = 7.0,
    tower_combine: str = "sum",
    optimizer: str = "auto",
    nproc: int = 1,
    members: int = 1,
    registry_uri: str = "",
    warm_start: bool = True,
):
    """Train a generative recommender; warm-starts from the champion in `registry_uri` when there is one."""
    from genrec.steps import champion_model, log_metrics
    from genrec.training import TrainConfig, launch_training

    config = TrainConfig(preset=preset, max_steps=max_steps, mtp_depth=mtp_depth, mask_new_days=cold_start_days,
                         tower_combine=tower_combine, optimizer=optimizer, members=members)
    with champion_model(registry_uri if warm_start else "") as champion:
        result = launch_training(sequences.path, model.path, config, embeddings_path=embeddings.path,
                                 warm_start_dir=champion.local_dir if champion else None, nproc=nproc)
    log_metrics(metrics, result)
    model.metadata.update({"preset": preset, "members": members, "num_params": result.get("num_params"),
                           "warm_start": champion.model_uri if champion else ""})
