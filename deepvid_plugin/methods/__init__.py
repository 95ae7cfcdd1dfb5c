"""One folder per explanation kind: ``methods/<kind>/`` holds its engine (the method, no I/O),
its explainer (the protocol a callback runs) and its kind description (``kind.py``: arrays,
validation, step summary, record building; numpy only, so readers can load it without torch).

Kinds never import each other; everything they share is in :mod:`deepvid_plugin.core`.
"""
