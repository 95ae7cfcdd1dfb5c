"""metadata.py (tags, content) and loader.py (entry point, fix_flags)."""

import json
import subprocess
import sys

import pytest
from tensorboard import program
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.core import core_plugin

from deepvid_plugin.tensorboard import loader, metadata


@pytest.mark.parametrize("iid", ["a", "test-17", "x/y", "<script>alert(1)</script>", "a b%2F",
                                 "é/../..", "deepvid/a/record"])
def test_tag_round_trip_for_any_id(iid):
    for kind in ("deepvid", "gradcam"):
        for role in metadata.ROLES:
            t = metadata.tag(iid, role, kind)
            assert t.count("/") == 3 and t.startswith(f"deepvid/{kind}/")
            assert metadata.parse(t) == metadata.TagInfo(kind, iid, role)


def test_version_1_tags_read_as_deepvid():
    for role in metadata.LEGACY_ROLES:
        t = metadata.legacy_tag("x/y", role)
        assert t == f"deepvid/x%2Fy/{role}"
        assert metadata.parse(t) == metadata.TagInfo("deepvid", "x/y", role, legacy=True)


def test_parse_rejects_foreign_tags():
    for t in ["loss", "deepvid/a", "deepvid/a/other", "images/a/record", "deepvid//record",
              "deepvid/a/b/c/record", "deepvid/Grad-CAM/a/record", "deepvid/gradcam//record",
              "deepvid/gradcam/a/neighbours"]:
        assert metadata.parse(t) is None, t
    with pytest.raises(ValueError, match="role: expected one of"):
        metadata.tag("a", "weights", "deepvid")
    with pytest.raises(ValueError, match="kind: expected a"):
        metadata.tag("a", "record", "Grad-CAM")


def test_summary_metadata_has_plugin_name_data_class_and_version():
    md = metadata.create_summary_metadata("record", "a", "deepvid")
    assert md.plugin_data.plugin_name == "deepvid"
    assert md.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    assert metadata.create_summary_metadata("summary", "a", "deepvid").data_class == \
        summary_pb2.DATA_CLASS_TENSOR
    content = metadata.parse_plugin_metadata(md.plugin_data.content)
    assert content == {"version": metadata.CONTENT_VERSION, "role": "record", "kind": "deepvid",
                       "subject": "a"}


def test_parse_plugin_metadata_accepts_newer_versions_and_rejects_garbage():
    newer = json.dumps({"version": metadata.CONTENT_VERSION + 5, "instance": "a",
                        "label": 2, "something_new": [1]}).encode()
    assert metadata.parse_plugin_metadata(newer)["label"] == 2
    for bad in [b"\xff\xfe", b"[]", b'{"kind": "record"}', b"not json"]:
        with pytest.raises(ValueError, match="content"):
            metadata.parse_plugin_metadata(bad)
    with pytest.raises(TypeError, match="content: expected bytes"):
        metadata.parse_plugin_metadata("{}")


def test_loader_plugin_name_matches_metadata():
    assert loader.PLUGIN_NAME == metadata.PLUGIN_NAME


def test_loader_module_stays_light():
    # TensorBoard imports the entry point for every user: it must not drag in torch, mlflow or
    # the plugin itself (whose import could fail and take TensorBoard down with it).
    code = ("import sys, deepvid_plugin.tensorboard.loader as l; "
            "print(sorted(m for m in ('torch', 'mlflow', 'werkzeug', 'deepvid_plugin.api', "
            "'deepvid_plugin.tensorboard.plugin', 'deepvid_plugin.tensorboard.store', "
            "'deepvid_plugin.tensorboard.summary') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_entry_point_is_registered():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="tensorboard_plugins") if ep.name == "deepvid"]
    assert len(eps) == 1 and eps[0].load() is loader.DeepVIDLoader


def _flags(*argv):
    tb = program.TensorBoard(plugins=[core_plugin.CorePluginLoader(), loader.DeepVIDLoader()])
    tb.configure(argv=["tensorboard", "--logdir", "/tmp/nowhere", *argv])
    return tb.flags


def test_fix_flags_keeps_every_sample_by_default():
    assert _flags().samples_per_plugin == {"deepvid": 0}
    assert _flags("--samples_per_plugin", "images=3").samples_per_plugin == {"images": 3,
                                                                            "deepvid": 0}


def test_fix_flags_respects_the_users_choice():
    assert _flags("--samples_per_plugin", "deepvid=7").samples_per_plugin == {"deepvid": 7}
