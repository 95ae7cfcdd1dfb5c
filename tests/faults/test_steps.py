"""Row 9: ``on_epoch_end(5)`` then ``on_epoch_end(3)`` (the epoch counter reset when
fine-tuning) returned ``[]`` silently; ``step=1.7`` was stored as step 1."""

from __future__ import annotations

import warnings

import pytest

from deepvid_plugin.callbacks import DeepVIDWarning
from deepvid_plugin.explain import DeepVID, PixelGenerator
from tests.callbacks.helpers import ListSink, small_cnn, summary_steps, tracked
from tests.faults.helpers import IDS, quick_callback


def test_a_step_going_back_warns_once_and_says_how_to_continue(tmp_path):
    sink = ListSink()
    cb = quick_callback(sinks=[sink])
    assert len(cb.on_epoch_end(5)) == 4
    with pytest.warns(DeepVIDWarning, match=r"step 3 is at or below the last step logged \(5\)"
                                            r".*log to a new run, or pass step_offset=3 "
                                            r"to the callback") as caught:
        assert cb.on_epoch_end(3) == []
    assert len([w for w in caught if issubclass(w.category, DeepVIDWarning)]) == 1
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        assert cb.on_epoch_end(4) == []
    assert not [w for w in later if issubclass(w.category, DeepVIDWarning)]  # warned once
    cb.close()
    assert sink.steps("deepvid") == {i: [5] for i in IDS}  # nothing overwritten


def test_step_offset_continues_the_timeline(tmp_path):
    first = quick_callback(logdir=tmp_path / "tb")
    for epoch in range(3):
        first.on_epoch_end(epoch)
    first.close()
    # the next stage counts epochs from 0 again; its steps go on after 2
    stage2 = quick_callback(logdir=tmp_path / "tb", step_offset=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(2):
            assert {r.step for r in stage2.on_epoch_end(epoch)} == {epoch + 3}
    assert not [w for w in caught if issubclass(w.category, DeepVIDWarning)]
    stage2.close()
    assert summary_steps(tmp_path / "tb") == {".": {i: [0, 1, 2, 3, 4] for i in IDS}}


def test_non_integer_steps_are_refused(tmp_path):
    cb = quick_callback(sinks=[ListSink()])
    with pytest.raises(ValueError, match=r"epoch: expected an int >= 0, got 1.7"):
        cb.on_epoch_end(1.7)
    with pytest.raises(ValueError, match=r"step_offset: expected an int >= 0, got 0.5"):
        quick_callback(sinks=[ListSink()], step_offset=0.5)
    x, _ = tracked(1)
    with pytest.raises(ValueError, match=r"step: expected an int >= 0, got 1.7"):
        DeepVID(PixelGenerator((1, 8, 8)), n_neighbours=16).explain(small_cnn(), x, step=1.7)
