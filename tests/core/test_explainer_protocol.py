"""The explainer protocol and its two implementations, used without a callback."""

from __future__ import annotations

import os

import pytest
import torch

from deepvid_plugin.core import kinds
from deepvid_plugin.core.explainer import (
    Artifacts,
    ExplainContext,
    NoArtifacts,
    is_explainer,
)
from deepvid_plugin.demo.digits import DigitsCNN, load_digits
from deepvid_plugin.explain import DeepVID, GradCAM, PixelGenerator
from deepvid_plugin.methods.deepvid.explainer import VAE_ARTIFACT_DIR, VAE_FILE, DeepVIDExplainer
from deepvid_plugin.methods.gradcam.explainer import GradCAMExplainer


class DirArtifacts:
    """A real artifact store over one directory; remembers what it saved."""

    def __init__(self, root):
        self.root = os.fspath(root)
        self.saved = []

    def find(self, name):
        path = os.path.join(self.root, name)
        return path if os.path.exists(path) else None

    def save(self, name, write, folder):
        write(os.path.join(self.root, name))
        self.saved.append((folder, name))


@pytest.fixture(scope="module")
def data():
    d = load_digits()
    torch.manual_seed(0)
    return d, DigitsCNN(width=8).eval()


def _context(d, k=3, **kw):
    return ExplainContext(x=d.x_test[:k], ids=tuple(f"i{i}" for i in range(k)),
                          labels=tuple(int(v) for v in d.y_test[:k]), **kw)


def test_what_counts_as_an_explainer():
    assert is_explainer(GradCAMExplainer())
    assert is_explainer(DeepVIDExplainer(generator=PixelGenerator((1, 8, 8))))
    assert isinstance(DirArtifacts("."), Artifacts) and isinstance(NoArtifacts(), Artifacts)
    assert not is_explainer(GradCAM())  # an engine: the callback wraps it

    class NoKind:
        every_n_epochs = 1

        def prepare(self, context): ...
        def explain(self, model, step): ...
        def state_dict(self): ...
        def load_state_dict(self, state): ...

    assert not is_explainer(NoKind())
    NoKind.kind = 3  # a kind must be a name
    assert not is_explainer(NoKind())
    NoKind.kind = "mine"
    assert is_explainer(NoKind())


def test_gradcam_explainer_records(data):
    d, model = data
    e = GradCAMExplainer(GradCAM(evidence_steps=4), every_n_epochs=2)
    with pytest.raises(RuntimeError, match="call prepare"):
        e.explain(model, 0)
    e.prepare(_context(d))
    recs = e.explain(model, 7)
    assert [(r.kind, r.subject, r.step) for r in recs] == [("gradcam", f"i{i}", 7)
                                                          for i in range(3)]
    for r in recs:
        kinds.prepare(r)  # valid by its kind's own rules
        assert r.meta["class_names"] == [str(i) for i in range(10)]  # no names given
        assert r.arrays["image"].shape == (1, 8, 8) and r.settings["method"] == "gradcam"
    assert e.state_dict() == {}


def test_deepvid_explainer_with_a_generator(data):
    d, model = data
    e = DeepVIDExplainer(generator=PixelGenerator((1, 8, 8)), n_neighbours=16, every_n_epochs=3)
    assert e.generator_source == "given" and e.every_n_epochs == 3
    e.prepare(_context(d, class_names=tuple("abcdefghij")))
    recs = e.explain(model, 2)
    assert [(r.kind, r.subject, r.step) for r in recs] == [("deepvid", f"i{i}", 2)
                                                          for i in range(3)]
    assert recs[0].class_names == tuple("abcdefghij")
    assert e.state_dict() == {"version": 1}  # nothing fitted: nothing to carry


def test_deepvid_explainer_fits_saves_and_reuses_its_vae(data, tmp_path):
    d, model = data
    kw = dict(train_data=d.x_train[:128], vae_epochs=1, n_neighbours=16, progress=False)
    store = DirArtifacts(tmp_path)
    first = DeepVIDExplainer(**kw)
    first.check(d.x_test[:3])
    rng = torch.random.get_rng_state()
    first.prepare(_context(d, artifacts=store))
    assert torch.equal(torch.random.get_rng_state(), rng)  # fitting restored the RNG
    assert first.generator_source == "fitted" and store.saved == [(VAE_ARTIFACT_DIR, VAE_FILE)]
    assert len(first.explain(model, 0)) == 3
    # an earlier run's VAE next to the logs is reused rather than refitted
    second = DeepVIDExplainer(**kw)
    second.prepare(_context(d, artifacts=store))
    assert second.generator_source == "logdir" and len(store.saved) == 1
    # a checkpoint's VAE wins over both, and equals the fitted one
    third = DeepVIDExplainer(**kw)
    third.load_state_dict(first.state_dict())
    third.prepare(_context(d, artifacts=NoArtifacts()))
    assert third.generator_source == "checkpoint"
    want = first.fitted_vae.state_dict()
    got = third.fitted_vae.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k].to(want[k].device))
                                             for k in want)


@pytest.mark.parametrize("kw, exc, message", [
    (dict(), ValueError, "generator: expected .* exactly one of them, got neither"),
    (dict(generator=PixelGenerator((1, 8, 8)), train_data=torch.zeros(4, 1, 8, 8)), ValueError,
     "exactly one of them, got generator, train_data"),
    (dict(engine=DeepVID(PixelGenerator((1, 8, 8))), n_neighbours=16), ValueError,
     r"n_neighbours: expected it unset with engine=\.\.\."),
    (dict(engine=GradCAM()), TypeError, "engine: expected a deepvid_plugin.explain.DeepVID"),
    (dict(generator=object()), TypeError, r"generator: expected an object with encode\(\)"),
    (dict(generator=PixelGenerator((1, 8, 8)), radius=-0.5), ValueError,
     "radius: expected a number >= 0"),
    (dict(train_data=3), TypeError, "train_data: expected a .* tensor or a DataLoader"),
])
def test_deepvid_explainer_bad_arguments(kw, exc, message):
    with pytest.raises(exc, match=message):
        DeepVIDExplainer(**kw)


def test_deepvid_explainer_checks_train_data_against_the_instances():
    e = DeepVIDExplainer(train_data=torch.zeros(4, 3, 8, 8))
    with pytest.raises(ValueError, match=r"train_data: expected images of shape \(N, 1, 8, 8\)"):
        e.check(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="train_data: the built-in VAE cannot model"):
        DeepVIDExplainer(train_data=torch.zeros(4, 2, 8, 8)).check(torch.zeros(2, 2, 8, 8))
