"""deepvid-plugin: explanations of PyTorch image classifiers during training, in TensorBoard and
MLflow.

Layers (``docs/architecture.md``): :mod:`.core` (records, kind registry, protocols) below the
backends (:mod:`.api`, :mod:`.tensorboard`, :mod:`.mlflow`), below the kinds
(``methods/<kind>/``), below :mod:`.callbacks`, below :mod:`.demo`. Heavy parts (torch,
tensorboard, mlflow) are imported lazily by the submodules that need them, so
``import deepvid_plugin`` stays cheap and safe (TensorBoard's plugin loader imports it).
"""

from deepvid_plugin.core.lazy import exports
from deepvid_plugin.core.record import (
    SCHEMA_VERSION,
    NewerSchemaError,
    Record,
    RecordDecodeError,
)

__version__ = "0.1.0"

_EXPORTS = {name: "explain" for name in (
    "CAMDistillLoss", "DeepVID", "ExplanationRecord", "GradCAM", "NetDissect", "Summit", "VAE",
    "randomization_check")}
_EXPORTS["DistillOutput"] = "distill"

__all__ = ["SCHEMA_VERSION", "NewerSchemaError", "Record", "RecordDecodeError", "__version__",
           *sorted(_EXPORTS)]
__getattr__ = exports(__name__, _EXPORTS)
