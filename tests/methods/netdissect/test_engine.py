"""Network Dissection: the concept set, the IoU arithmetic, and dissections whose answer is known
(a planted red unit, a unit equal to a concept mask, noise units, a trained vs a random net)."""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from deepvid_plugin.methods.netdissect import ConceptSet, NetDissect, iou_matrix
from deepvid_plugin.methods.netdissect.synthetic import COLORS, SHAPES, available_textures


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads per process oversubscribe the cores
    (measured: the training test took 10x longer)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def probe():
    return ConceptSet.synthetic(1000, 32, seed=0)


@pytest.fixture(scope="module")
def small(probe):
    """200 probe images, for the tests whose claim does not need the default 1,000."""
    return probe.subset(np.arange(200))


def red_unit(tau: float = 0.4) -> nn.Module:
    """ReLU(R - (G + B) / 2 - tau) as a 1x1 convolution: a unit that can only see red."""
    conv = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -0.5, -0.5]).view(1, 3, 1, 1))
        conv.bias.fill_(-tau)
    return nn.Sequential(conv, nn.ReLU())


class NoiseUnits(nn.Module):
    """Units unrelated to any concept: a pseudo-random but deterministic function of the input
    (the fractional part of a scaled random projection), so both passes see the same values."""

    def __init__(self, units: int = 32, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Conv2d(3, units, 3, padding=1)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=g))
        self.noise = nn.Identity()

    def forward(self, x):
        return self.noise(torch.frac(1000.0 * self.proj(x).abs()))


# ---- the concept set ---------------------------------------------------------------------------
def test_renderer_is_fast_and_deterministic():
    start = time.perf_counter()
    a = ConceptSet.synthetic(1000, 32, seed=3)
    elapsed = time.perf_counter() - start
    assert elapsed < 15.0, f"rendering 1,000 images took {elapsed:.1f} s"
    b = ConceptSet.synthetic(1000, 32, seed=3)
    c = ConceptSet.synthetic(1000, 32, seed=4)
    assert torch.equal(a.images, b.images)
    for cat in a.pixel_labels:
        assert np.array_equal(a.pixel_labels[cat], b.pixel_labels[cat])
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (1000, 3, 32, 32) and a.images.dtype == torch.float32
    assert float(a.images.min()) >= 0.0 and float(a.images.max()) <= 1.0


def test_concepts_cover_every_category(probe):
    assert set(probe.categories) == {"color", "object", "part", "scene", "texture"}
    assert [n for n, c in zip(probe.labels, probe.label_category, strict=True) if c == "color"] == list(COLORS)
    assert len(COLORS) == 11
    for shape in SHAPES:
        assert probe.label_category[probe.label_id(shape) - 1] == "object"
        assert probe.label_category[probe.label_id(f"{shape}-boundary") - 1] == "part"
        assert probe.label_category[probe.label_id(f"{shape}-interior") - 1] == "part"
    textures = [n for n, c in zip(probe.labels, probe.label_category, strict=True)
                if c == "texture"]
    assert textures == list(available_textures())
    assert {"stripes-horizontal", "stripes-vertical", "checker", "dots"} <= set(textures)
    try:
        import skimage  # noqa: F401
    except ImportError:  # the documented fallback: procedural textures only
        assert not {"brick", "grass", "gravel"} & set(textures)
    else:
        assert {"brick", "grass", "gravel"} <= set(textures)
    # every label occurs; parts and objects partition each object's visible pixels
    assert (probe.label_pixels() > 0).all()
    obj, part = probe.pixel_labels["object"], probe.pixel_labels["part"]
    assert np.array_equal(obj > 0, part > 0)
    assert np.array_equal(obj > 0, probe.pixel_labels["color"] > 0)
    assert probe.image_labels["scene"].min() > 0  # every image has a scene


def test_every_concept_can_reach_the_detector_threshold(probe):
    """At a 0.5% quantile IoU <= 0.005 / coverage, so coverage must stay below 12.5%."""
    cov = probe.coverage()
    assert len(cov) == len(probe.labels) > 40
    worst = max(cov, key=cov.get)
    assert cov[worst] < 0.1, (worst, cov[worst])
    assert 0.005 / cov[worst] > 0.04 * 1.25


def test_label_names_are_checked(probe):
    with pytest.raises(ValueError, match=r"close: \['circle'"):
        probe.label_id("circl")


# ---- IoU arithmetic ----------------------------------------------------------------------------
def test_iou_on_hand_made_tallies():
    inter = np.array([[3, 0], [2, 0]])
    unit_by_cat = np.array([[4, 9], [2, 0]])  # unit 1 has no mask pixels in category 1's images
    label_pixels = np.array([6, 0])
    iou = iou_matrix(inter, unit_by_cat, label_pixels, np.array([0, 1]))
    assert iou[0, 0] == pytest.approx(3 / (4 + 6 - 3))
    assert iou[0, 1] == 0.0  # nothing in common
    assert iou[1, 0] == pytest.approx(2 / (2 + 6 - 2))
    assert iou[1, 1] == 0.0  # empty union: 0, not NaN


def _tiny_set() -> ConceptSet:
    """4 images of 4x4. The R channel is the unit (> 0 on 6 pixels); labels chosen by hand."""
    img = torch.zeros(4, 3, 4, 4)
    color = np.zeros((4, 1, 4, 4), np.int32)
    obj = np.zeros((4, 1, 4, 4), np.int32)
    scene = np.zeros((4, 1), np.int32)
    color[0, 0, 0, :] = 1  # label "a": 4 pixels in image 0 ...
    color[1, 0, 3, 2:] = 1  # ... and 2 in image 1 -> 6; images 2, 3 carry no colour labels
    img[0, 0, 0, :3] = 3.0  # 3 active pixels inside "a"
    img[1, 0, 0, 0] = 2.0  # 1 active pixel in image 1, outside "a"
    img[3, 0, 1, 1:3] = 1.0  # 2 active pixels in image 3, which has no colour labels
    obj[3, 0, 1, :] = 2  # label "b": 4 pixels in image 3 holding its 2 active pixels
    scene[0, 0] = 3  # label "s": image 0 only, covers its 16 pixels
    return ConceptSet(images=img, labels=("a", "b", "s"),
                      label_category=("color", "object", "scene"),
                      categories=("color", "object", "scene"),
                      pixel_labels={"color": color, "object": obj}, image_labels={"scene": scene})


def test_dissection_of_a_hand_made_set_matches_hand_counts():
    cs = _tiny_set()
    conv = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
    # 6 of 64 activations are > 0: that is the top quantile
    (res,) = NetDissect(cs, [conv], quantile=6 / 64, batch_size=3).dissect(nn.Sequential(conv))
    assert res.thresholds[0] == 0.0 and res.mask_fraction[0] == pytest.approx(6 / 64)
    iou = dict(zip(res.labels, res.iou[0], strict=True))
    # gate: only images with colour labels (0, 1) count for "a": mask 4, label 6, overlap 3
    assert iou["a"] == pytest.approx(3 / (4 + 6 - 3))
    assert iou["b"] == pytest.approx(2 / (2 + 4 - 2))  # image 3 only
    assert iou["s"] == pytest.approx(3 / (3 + 16 - 3))  # image-level: the whole of image 0
    assert res.units == [{"unit": 0, "label": "b", "category": "object", "iou": iou["b"],
                          "detector": True}]
    assert res.unique_detectors == {"color": 0, "object": 1, "scene": 0}
    assert list(res.top_images[0][:3]) == [0, 1, 3]  # images whose maximum is 1, by index


def test_a_1x1_map_covers_whole_images():
    """A 1x1 map upsamples to a constant (tallied without building masks): per-image maxima
    3, 2, 0, 1 with k = 2 select images 0 and 1 entirely."""
    cs = _tiny_set()
    conv = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
    model = nn.Sequential(conv, nn.AdaptiveMaxPool2d(1))
    with pytest.warns(UserWarning, match="1x1"):
        (res,) = NetDissect(cs, ["1"], quantile=0.5).dissect(model)
    assert res.thresholds[0] == 1.0 and res.mask_fraction[0] == 0.5
    iou = dict(zip(res.labels, res.iou[0], strict=True))
    assert iou["a"] == pytest.approx(6 / 32)  # gate: images 0 and 1, all 32 pixels masked
    assert iou["b"] == 0.0  # image 3 is not masked
    assert iou["s"] == 1.0  # image 0: the whole image is the scene label and the mask


def test_a_unit_equal_to_a_concept_mask_gets_iou_1(probe):
    ring = probe.pixel_labels["object"][:, 0] == probe.label_id("ring")
    images = probe.images.clone()
    images[:, 0] = torch.from_numpy(ring).float()  # R channel = the ring mask, exactly
    cs = dataclasses.replace(probe, images=images)
    count, total = int(ring.sum()), ring.size
    assert count > 0
    conv = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
    (res,) = NetDissect(cs, ["0"], quantile=count / total).dissect(nn.Sequential(conv))
    assert res.units[0]["label"] == "ring"
    assert res.units[0]["iou"] == 1.0


# ---- dissections with a known answer -----------------------------------------------------------
def test_planted_red_unit_is_labelled_red(probe):
    (res,) = NetDissect(probe, ["1"]).dissect(red_unit())
    unit = res.units[0]
    assert unit["label"] == "red" and unit["category"] == "color"
    assert unit["iou"] > 0.04 and unit["detector"]
    assert res.unique_detectors["color"] == 1
    assert sum(res.unique_detectors.values()) == 1
    # IoU with "red" clearly beats every other label
    others = np.delete(res.iou[0], probe.label_id("red") - 1)
    assert unit["iou"] > 3 * others.max()


def test_noise_units_keep_half_a_percent_and_detect_almost_nothing(probe):
    cs = probe.subset(np.arange(500))
    model = NoiseUnits(16)
    small = nn.Sequential(model, nn.AvgPool2d(4))  # 8x8 maps, upsampled to the 32x32 labels
    at_32, at_8 = NetDissect(cs, ["noise"]).dissect(model)[0], \
        NetDissect(cs, ["1"]).dissect(small)[0]
    # at label resolution the mask is the top 0.5% of activations: exactly k = 0.005 * n of them,
    # fewer only where values tie at the threshold (float32 noise has ties)
    k = round(0.005 * len(cs) * 32 * 32) / (len(cs) * 32 * 32)
    assert (at_32.mask_fraction <= k).all() and (at_32.mask_fraction > 0.0045).all()
    # upsampled from 8x8, an isolated noise peak only exceeds its threshold near its centre
    # (bilinear values there are averages with lower neighbours): the mask shrinks, never grows
    assert (at_8.mask_fraction > 0).all() and (at_8.mask_fraction < 0.005).all()
    for res in (at_32, at_8):
        red = sum(u["detector"] and u["label"] == "red" for u in res.units)
        assert red <= 1, res
        assert res.n_detectors <= 0.1 * len(res.units), res


def test_sharded_tallies_equal_a_one_process_run(probe):
    probe = probe.subset(np.arange(300))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
    nd = NetDissect(probe, ["1", "4"], batch_size=50)
    whole = nd.dissect(model)
    shards = [np.arange(r, len(probe), 3) for r in range(3)]  # as 3 DDP ranks would take them
    thresholds = nd.thresholds([nd.top_activations(model, s) for s in shards])
    parts = nd.finish([nd.tally(model, thresholds, s) for s in reversed(shards)], thresholds)
    assert len(parts) == len(whole) == 2
    for a, b in zip(whole, parts, strict=True):
        assert np.array_equal(a.thresholds, b.thresholds)
        assert np.array_equal(a.iou, b.iou)
        assert np.array_equal(a.top_images, b.top_images)
        assert a.units == b.units and a.unique_detectors == b.unique_detectors
    with pytest.raises(ValueError, match="cover"):
        nd.thresholds([nd.top_activations(model, shards[0])])


def test_one_pass_cache_gives_the_same_result(small):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True))
    with torch.no_grad():
        model[0].bias.sub_(1e3)  # every conv output negative: the ReLU makes them all 0
    cached = NetDissect(small, ["0", "1"], cache_mb=256).dissect(model)
    rerun = NetDissect(small, ["0", "1"], cache_mb=0).dissect(model)
    for a, b in zip(cached, rerun, strict=True):
        assert np.array_equal(a.iou, b.iou) and np.array_equal(a.thresholds, b.thresholds)
    # the conv's own output was kept, not what the in-place ReLU made of it afterwards
    assert cached[0].thresholds.min() < 0 <= cached[1].thresholds.min()


# ---- manners: modes, hooks, RNG, errors, warnings ----------------------------------------------
def test_model_hooks_modes_and_rng_are_left_alone(small):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Dropout(0.5))
    model.train()
    model[1].eval()  # a mixed state must come back exactly
    before = torch.random.get_rng_state()
    np_before = np.random.get_state()[1].copy()
    NetDissect(small, [model[2]]).dissect(model)
    assert model.training and model[0].training and not model[1].training and model[3].training
    assert all(not m._forward_hooks for m in model.modules())
    assert torch.equal(torch.random.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], np_before)


def test_bad_layer_names_list_close_matches(small):
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Conv2d(3, 4, 3)))
    with pytest.raises(ValueError, match=r"layers\[0\].*features\.0.*got 'feature.0'"):
        NetDissect(small, ["feature.0"]).dissect(model)
    with pytest.raises(ValueError, match="quantile"):
        NetDissect(small, ["features.0"], quantile=0.0)
    with pytest.raises(ValueError, match="layers"):
        NetDissect(small, "features.0")


def test_small_maps_warn_with_the_layer_and_its_size(small):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(2))
    with pytest.warns(UserWarning, match=r"'1'.*2x2"):
        NetDissect(small, ["1"]).dissect(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NetDissect(small, ["0"]).dissect(model)  # 32x32: no warning


def test_baseline_is_a_fresh_copy_computed_once(small):
    torch.manual_seed(0)
    model = red_unit()
    weights = model[0].weight.clone()
    nd = NetDissect(small, ["1"])
    base = nd.baseline(model)
    assert torch.equal(model[0].weight, weights)  # the user's model is untouched
    assert nd.baseline(model) is base  # stored, not recomputed
    trained = nd.dissect(model)
    assert trained[0].units[0]["label"] == "red"
    assert not np.array_equal(base[0].thresholds, trained[0].thresholds)  # other weights
    calls = []

    def factory():
        calls.append(torch.rand(1).item())  # seeded by baseline(): the same draw every time
        return red_unit()

    nd2 = NetDissect(small, ["1"])
    first = nd2.baseline(factory, seed=3)
    assert nd2.baseline(factory, seed=3) is first and calls[0] == calls[1]
    # layers given as modules of the user's model are found in its re-initialised copy by name
    by_module = NetDissect(small, [model[1]]).baseline(model)
    assert np.array_equal(by_module[0].iou, base[0].iou)
    with pytest.raises(ValueError, match="name the layers"):
        NetDissect(small, [model[1]]).baseline(red_unit)


def test_transform_feeds_the_model_what_it_expects(small):
    """A grey 8x8 model dissected on the 32x32 colour probe: maps upsampled to the labels."""
    grey = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())

    def to_grey_8x8(x):
        assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32
        return nn.functional.interpolate(x.mean(1, keepdim=True), size=(8, 8), mode="area")

    (res,) = NetDissect(small, ["1"], transform=to_grey_8x8).dissect(grey)
    assert res.shape == (4, 8, 8) and res.iou.shape == (4, len(small.labels))
    assert (res.mask_fraction > 0).all()
    # without it the model cannot take the colour images: a named error saying what to pass
    with pytest.raises(ValueError, match=r"takes 1-channel images.*3-channel.*transform="):
        NetDissect(small, ["1"]).dissect(grey)


# ---- Broden's on-disk format -------------------------------------------------------------------
def test_broden_round_trip_gives_identical_masks_and_ious(small, tmp_path):
    root = small.write_broden(tmp_path / "broden")
    with open(root / "index.csv") as f:
        assert f.readline().strip() == ("image,split,ih,iw,sh,sw,color,object,material,part,"
                                        "scene,texture")
    assert {p.name for p in root.glob("c_*.csv")} == {f"c_{c}.csv" for c in small.categories}
    back = ConceptSet.broden(root, 32)
    assert torch.equal(back.images, small.images)
    assert (back.labels, back.label_category, back.categories) == \
        (small.labels, small.label_category, small.categories)
    assert back.pixel_labels.keys() == small.pixel_labels.keys()
    for cat in small.pixel_labels:
        assert np.array_equal(back.pixel_labels[cat], small.pixel_labels[cat]), cat
    assert np.array_equal(back.image_labels["scene"], small.image_labels["scene"])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    a = NetDissect(small, ["1", "2"]).dissect(model)
    b = NetDissect(back, ["1", "2"]).dissect(model)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.iou, y.iou) and x.units == y.units
    assert max(u["iou"] for u in a[0].units) > 0.04  # the comparison is not between zeros
    half = ConceptSet.broden(root, 16, limit=5)
    assert half.images.shape == (5, 3, 16, 16)
    assert half.pixel_labels["object"].shape == (5, 1, 16, 16)
    assert set(np.unique(half.pixel_labels["object"])) <= set(np.unique(
        small.pixel_labels["object"][:5]))  # nearest: no invented labels


def test_broden_reader_decodes_r_plus_256g_integers_and_primary_categories(tmp_path):
    """A hand-written Broden directory: label 300 needs the G channel; label 5 is listed by two
    categories; label 7 by none, so label.csv decides."""
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.fromarray(np.full((6, 6, 3), 128, np.uint8)).save(tmp_path / "images" / "a.jpg")
    lab = np.zeros((6, 6, 3), np.uint8)
    lab[:2, :, 0], lab[:2, :, 1] = 300 % 256, 300 // 256  # label 300 = R 44 + 256 * G 1
    lab[4:, :, 0] = 7
    Image.fromarray(lab).save(tmp_path / "images" / "a_obj.png")
    names = [f"l{i}" for i in range(1, 301)]
    (tmp_path / "label.csv").write_text(
        "number,name,category,frequency,coverage,syns\n" + "".join(
            f"{i},{n},{'scene(3)' if i == 12 else 'object(1);color(9)' if i == 7 else 'object(2)'}"
            f",1,0.1,\n" for i, n in enumerate(names, 1)))
    (tmp_path / "category.csv").write_text("name,first,last,count,frequency\ncolor,1,1,1,1\n"
                                           "object,1,300,298,1\nscene,12,12,1,1\n")
    header = "code,number,name,frequency,coverage\n"
    (tmp_path / "c_color.csv").write_text(header + "1,5,l5,1,0.1\n")
    (tmp_path / "c_object.csv").write_text(header + "1,5,l5,1,0.3\n")  # covers more as object
    (tmp_path / "c_scene.csv").write_text(header)
    (tmp_path / "index.csv").write_text(
        "image,split,ih,iw,sh,sw,color,object,material,part,scene,texture\n"
        "a.jpg,train,6,6,6,6,,a_obj.png,,,12,\n")
    cs = ConceptSet.broden(tmp_path, 6)
    assert cs.label_category[7 - 1] == "color"  # in no c_ file: label.csv's larger count
    assert cs.label_category[5 - 1] == "object"  # in two c_ files: the larger coverage
    assert cs.label_category[300 - 1] == "object" and cs.label_category[12 - 1] == "scene"
    obj = cs.pixel_labels["object"][0, 0]
    assert (obj[:2] == 300).all() and (obj[4:] == 7).all() and (obj[2:4] == 0).all()
    assert cs.image_labels["scene"].tolist() == [[12]]
    assert cs.has_category().tolist() == [[True, True, True]]


def test_broden_reader_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="label.csv"):
        ConceptSet.broden(tmp_path, 32)


# ---- training makes units interpretable --------------------------------------------------------
def _shape_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, len(SHAPES)))


@pytest.mark.slow
def test_a_briefly_trained_net_has_more_unique_detectors_than_its_random_baseline(probe):
    train = ConceptSet.synthetic(2000, 32, seed=1)
    obj = train.pixel_labels["object"][:, 0].reshape(len(train), -1)
    single = np.array([len(np.unique(o[o > 0])) == 1 for o in obj])  # one object: a clean label
    x, y = train.images[single], torch.from_numpy(train.targets[single])
    torch.manual_seed(0)
    model = _shape_net()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(8):
        for idx in torch.randperm(len(y), generator=gen).split(32):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    cs = probe.subset(np.arange(500))
    with torch.no_grad():
        single_probe = np.array([len(np.unique(o[o > 0])) == 1 for o in
                                 cs.pixel_labels["object"][:, 0].reshape(len(cs), -1)])
        pred = model(cs.images[single_probe]).argmax(1).numpy()
    assert (pred == cs.targets[single_probe]).mean() > 0.25  # it learnt shapes (chance 1/8)
    nd = NetDissect(cs, ["2", "6", "10"])
    trained, random = nd.dissect(model), nd.baseline(_shape_net)
    unique = [sum(r.unique_detectors.values()) for r in trained]
    chance = [sum(r.unique_detectors.values()) for r in random]
    print("unique detectors per layer, trained vs random:", unique, chance)
    assert sum(unique) > sum(chance), (trained, random)
    assert unique[-1] > chance[-1]  # the deepest layer gains the most
