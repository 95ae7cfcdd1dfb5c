"""The shared layer below every kind and backend: the record envelope and its framing, the kind
registry, the protocols (explainer, sink, store), argument checks, the guard that leaves a model
as found, faithfulness evidence, the encoders of stored summaries and image rendering.

It imports no kind and no backend (``import-linter`` contracts in ``setup.cfg``). Import the
submodules themselves (``from deepvid_plugin.core import kinds``); this file imports nothing, so
readers that need only the registry never pay for torch.
"""
