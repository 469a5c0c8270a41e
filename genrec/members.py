"""Ensembles (TrainConfig.members > 1): each member is an ordinary training run of its own, all run
side by side, then packed into one model folder that scores as one model (genrec.model.ensemble).

Members never talk while training, so each keeps everything a single run has (checkpoints and
resume, the time budget, failure messages) and the processes need no collective beyond their own.
The packed folder is what validation, shadow evaluation, promotion and serving read; each member's
own folder stays under `members/<k>` (its metrics, config and TensorBoard log; weights and
checkpoints are dropped once packed).
"""
from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace

import torch

from genrec.data import read_vocabulary
from genrec.errors import TrainingError
from genrec.events import MODEL_WEIGHTS_FILE, VOCAB_FILE
from genrec.model.ensemble import MemberEnsemble
from genrec.model.serving import load_model
from genrec.training import CHECKPOINT_DIR, TrainConfig, run_torchrun, validate_model, write_model_folder

MEMBERS_DIR = "members"


def member_config(config: TrainConfig, k: int, threads: int) -> TrainConfig:
    """Member k's run: one model, its own seed (seed * members + k, so runs of other seeds never
    share a member), `threads` torch threads per process unless the config names them."""
    return replace(config, members=1, seed=config.seed * config.members + k, num_threads=config.num_threads or threads)


def member_layout(members: int, nproc: int, cpus: int, gpus: int) -> tuple[int, int, list[dict[str, str]]]:
    """(processes per member, threads per process, each member's environment): the `nproc`
    processes are split evenly (at least one each), the CPU cores between all of them, and GPUs,
    when there are at least as many as members, in contiguous blocks of gpus // members."""
    per_member = max(1, nproc // members)
    threads = max(1, cpus // (members * per_member))
    if gpus < members:
        return per_member, threads, [{} for _ in range(members)]
    block = gpus // members
    envs = [{"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in range(k * block, (k + 1) * block))} for k in range(members)]
    return min(per_member, block), threads, envs


def train_members(data_dir: str, out_dir: str, config: TrainConfig, embeddings_path: str | None = None,
                  warm_start_dir: str | None = None, nproc: int = 1) -> dict:
    """Train config.members members side by side under out_dir/members/<k>, then pack them into
    out_dir (the model folder); returns the ensemble's metrics (each member's under "members")."""
    k_members = config.members
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    per_member, threads, envs = member_layout(k_members, nproc, os.cpu_count() or 1, gpus)
    dirs = [os.path.join(out_dir, MEMBERS_DIR, str(k)) for k in range(k_members)]

    stop = threading.Event()  # the first member to fail stops the others: no ensemble without it
    first_failure: list[int] = []
    lock = threading.Lock()

    def run(k: int) -> dict:
        try:
            return run_torchrun(data_dir, dirs[k], member_config(config, k, threads), embeddings_path,
                                warm_start_dir, per_member, warm_start_member=k, env_overrides=envs[k], stop=stop)
        except BaseException:
            with lock:
                if not stop.is_set():
                    first_failure.append(k)
                    stop.set()
            raise

    with ThreadPoolExecutor(max_workers=k_members) as pool:
        futures = [pool.submit(run, k) for k in range(k_members)]
        errors = [f.exception() for f in futures]
    if first_failure:
        k = first_failure[0]
        stopped = [j for j, e in enumerate(errors) if e is not None and j != k]
        also = f" (stopped: member {', '.join(map(str, stopped))})" if stopped else ""
        raise TrainingError(f"member {k}: {errors[k]}{also}")
    return pack_members(data_dir, out_dir, dirs, config, [f.result() for f in futures])


def pack_members(data_dir: str, out_dir: str, member_dirs: list[str], config: TrainConfig,
                 member_metrics: list[dict]) -> dict:
    """Load the trained members, validate them as one ensemble and write the packed model folder."""
    models, cards = zip(*(load_model(d) for d in member_dirs))
    ensemble = MemberEnsemble(list(models))
    card0 = cards[0]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task_metrics, per_user = validate_model(ensemble.to(device), data_dir, read_vocabulary(data_dir),
                                            tuple(card0["tasks"]), config, device)
    members, num_params = len(member_dirs), ensemble.get_num_params()
    card = card0 | {"members": members, "num_params": num_params,
                    "train": asdict(config) | {"optimizer": card0["train"]["optimizer"]},
                    "description": f"ensemble of {members}: {card0['description']}",
                    "member_seeds": [c["train"]["seed"] for c in cards]}
    metrics = {"preset": config.preset, "members": members, "num_params": num_params,
               "tokens": sum(m["tokens"] for m in member_metrics), "steps": sum(m["steps"] for m in member_metrics),
               "train_seconds": max(m["train_seconds"] for m in member_metrics),
               "optimizer": member_metrics[0]["optimizer"],
               "final_train_loss": sum(m["final_train_loss"] for m in member_metrics) / members,
               "tasks": task_metrics, "member_metrics": {str(k): m for k, m in enumerate(member_metrics)}}
    write_model_folder(out_dir, ensemble.state_dict(), card, os.path.join(data_dir, VOCAB_FILE), per_user, metrics)
    for d in member_dirs:  # packed: the members' weights and checkpoints would only double the folder
        os.remove(os.path.join(d, MODEL_WEIGHTS_FILE))
        shutil.rmtree(os.path.join(d, CHECKPOINT_DIR), ignore_errors=True)
    drop_stale_members(out_dir, members)
    return metrics


def drop_stale_members(out_dir: str, keep: int) -> None:
    """Remove member folders `keep` and up that an earlier, larger ensemble left in out_dir (all of
    them after a single model), so the folder describes only the model it holds."""
    root = os.path.join(out_dir, MEMBERS_DIR)
    if keep == 0 or not os.path.isdir(root):
        shutil.rmtree(root, ignore_errors=True)
        return
    for name in os.listdir(root):
        if not (name.isdigit() and int(name) < keep):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
