"""The ``tensorboard_plugins`` entry point: ``deepvid_plugin.tensorboard.loader:DeepVIDLoader``.

TensorBoard imports this module at start-up for every user who has deepvid-plugin installed, and
an import error here stops TensorBoard from starting at all. So it imports only TensorBoard's
``base_plugin`` and the standard library; the plugin itself (numpy, werkzeug, ...) is imported
in :meth:`DeepVIDLoader.load`.
"""

from __future__ import annotations

from tensorboard.plugins import base_plugin

# Also metadata.PLUGIN_NAME; repeated here so this module imports nothing of ours (a test checks
# that the two agree).
PLUGIN_NAME = "deepvid"


class DeepVIDLoader(base_plugin.TBLoader):
    """Loads :class:`~deepvid_plugin.tensorboard.plugin.DeepVIDPlugin` and keeps every sample.

    TensorBoard keeps only 10 samples per tag of an unknown plugin (100 under RustBoard), which
    would silently thin an epoch timeline. ``fix_flags`` asks both loaders to keep all of them,
    unless the user chose a number with ``--samples_per_plugin deepvid=N``.
    """

    def fix_flags(self, flags):
        spp = getattr(flags, "samples_per_plugin", None)
        if spp is None or spp == "":
            flags.samples_per_plugin = {PLUGIN_NAME: 0}
        elif isinstance(spp, dict):  # what --samples_per_plugin parses to (0 = keep all)
            spp.setdefault(PLUGIN_NAME, 0)

    def load(self, context):
        from deepvid_plugin.tensorboard.plugin import DeepVIDPlugin

        return DeepVIDPlugin(context)
