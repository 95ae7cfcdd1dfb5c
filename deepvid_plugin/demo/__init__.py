"""``deepvid demo`` and its stories: the top layer, which may use everything below it.

- :mod:`.cli`: the command (``add_arguments``, ``run``);
- :mod:`.shortcut`: the default story (a clean, a shortcut and a distilled run, every kind);
- :mod:`.stories`: the data sets a story runs on (marked digits, rendered shapes);
- :mod:`.single`: ``--data digits``, one DeepVID run;
- :mod:`.digits`: scikit-learn's digits and the small CNN the demos train;
- :mod:`.serve`: TensorBoard on 127.0.0.1 with the deep links printed.
"""
