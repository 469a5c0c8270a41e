"""KFP interface of the scaling-law fit over the sweep's models (genrec.scaling)."""
from typing import List

from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output


def diagnose_scaling(
    runs: Input[List[Model]],
    fits: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
):
    """Offset power-law fit per task: saturated / headroom / insufficient-data, with a plot."""
    import os
    import shutil
    import tempfile

    from genrec.scaling import diagnose_scaling as run
    from genrec.steps import log_metrics

    with tempfile.TemporaryDirectory(prefix="scaling-") as out:  # the reports live on in the artifacts
        result = run([r.path for r in runs], out)
        shutil.copyfile(os.path.join(out, "scaling.json"), fits.path)
        shutil.copyfile(os.path.join(out, "scaling.html"), report.path)
    log_metrics(metrics, result)
