"""KFP components: thin typed interfaces over genrec. Each module holds one component function; this
module turns them into KFP components for a given set of container images (a pipeline-level setting)."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from kfp import dsl

from components.diagnose_scaling import diagnose_scaling
from components.embed_metadata import embed_metadata
from components.extract_sequences import extract_sequences
from components.promote import promote
from components.shadow_eval import shadow_eval
from components.train import train

DEFAULT_REGISTRY = "us-docker.pkg.dev/YOUR_PROJECT/genrec"


@dataclass(frozen=True)
class PipelineImages:
    """Container images for the steps: one CPU image (Beam, embedding, evaluation, promotion) and one
    CUDA trainer image. Set once at compile time (`genrec compile --cpu-image ... --trainer-image ...`)."""

    cpu: str = f"{DEFAULT_REGISTRY}/genrec-cpu:0.1.0"
    trainer: str = f"{DEFAULT_REGISTRY}/genrec-trainer:0.1.0"


def build_components(images: PipelineImages = PipelineImages()) -> SimpleNamespace:
    """The six components bound to their images. The images already hold genrec and kfp, so nothing is
    pip-installed at run time (reproducible, and works on clusters without egress)."""

    def make(func, image: str):
        return dsl.component(func, base_image=image, install_kfp_package=False)

    return SimpleNamespace(
        extract_sequences=make(extract_sequences, images.cpu),
        embed_metadata=make(embed_metadata, images.cpu),
        train=make(train, images.trainer),
        diagnose_scaling=make(diagnose_scaling, images.cpu),
        shadow_eval=make(shadow_eval, images.cpu),
        promote=make(promote, images.cpu),
    )
