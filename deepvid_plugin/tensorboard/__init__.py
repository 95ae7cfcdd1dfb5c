"""DeepVID in TensorBoard: ``write_record`` / ``TensorBoardSink`` (write) and the DeepVID tab (read).

TensorBoard imports ``deepvid_plugin.tensorboard.loader`` (and so this package) at start-up for
every user, so nothing is imported here eagerly; the public names load on first use.
"""

__all__ = ["TensorBoardSink", "close_logdir", "write_record"]


def __getattr__(name: str):
    if name in __all__:
        from deepvid_plugin.tensorboard import summary

        return getattr(summary, name)
    raise AttributeError(f"module 'deepvid_plugin.tensorboard' has no attribute {name!r}")
