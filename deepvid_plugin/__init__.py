"""deepvid-plugin: DeepVID explanations of PyTorch image classifiers in TensorBoard and MLflow.

Heavy parts (torch, tensorboard, mlflow) are imported lazily by the submodules that need them, so
``import deepvid_plugin`` stays cheap and safe.
"""

from deepvid_plugin.record import (
    SCHEMA_VERSION,
    ExplanationRecord,
    NewerSchemaError,
    Record,
    RecordDecodeError,
)

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "ExplanationRecord",
    "NewerSchemaError",
    "Record",
    "RecordDecodeError",
    "CAMDistillLoss",
    "DeepVID",
    "GradCAM",
    "NetDissect",
    "Summit",
    "VAE",
    "__version__",
]


def __getattr__(name: str):
    # Lazy so that `import deepvid_plugin` (e.g. from TensorBoard's plugin loader) never pays for
    # or breaks on torch.
    if name in ("DeepVID", "GradCAM", "NetDissect", "Summit", "VAE", "randomization_check"):
        from deepvid_plugin import explain

        return getattr(explain, name)
    if name in ("CAMDistillLoss", "DistillOutput"):
        from deepvid_plugin import distill

        return getattr(distill, name)
    raise AttributeError(f"module 'deepvid_plugin' has no attribute {name!r}")
