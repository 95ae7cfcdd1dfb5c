"""The shared sink suite (TensorBoard's ``SummaryBaseTest`` pattern).

:class:`SinkContract` holds the tests; each sink adds a ``Test...`` subclass implementing

- ``make_sink(tmp_path) -> Sink``: a fresh sink writing somewhere under ``tmp_path``;
- ``read_back(tmp_path) -> (RecordStore, run)``: that place read back through the backend's real
  reader, and the run the sink wrote to.

Every check goes through the :class:`~deepvid_plugin.api.RecordStore` the API serves from, so a
sink passes only if what it writes is what users will see. The suite runs once per registered
kind (:func:`deepvid_plugin.core.kinds.names`), with that kind's factory from ``tests/factories.py``.
"""

import numpy as np
import pytest

from deepvid_plugin import api
from deepvid_plugin.core import kinds
from deepvid_plugin.core.record import SCHEMA_VERSION, NewerSchemaError
from deepvid_plugin.core.sink import Sink
from tests.factories import FACTORIES

INSTANCES = ("a", "test/17 <x>")
STEPS = (0, 1, 2, 5)
KINDS = kinds.names()


def test_every_registered_kind_has_a_factory():
    assert KINDS and set(KINDS) == set(FACTORIES)


class SinkContract:
    """Runs once per registered kind: ``make`` builds that kind's records (tests/factories.py)
    and every read goes through ``kind=``."""

    def make_sink(self, tmp_path) -> Sink:
        raise NotImplementedError

    def read_back(self, tmp_path) -> tuple[api.RecordStore, str]:
        raise NotImplementedError

    @pytest.fixture(params=KINDS)
    def kind(self, request):
        return request.param

    @pytest.fixture
    def make(self, kind):
        return FACTORIES[kind]

    # ---- helpers ----
    def _write(self, tmp_path, records):
        sink = self.make_sink(tmp_path)
        assert isinstance(sink, Sink)
        for r in records:
            sink.write(r, r.step)
        sink.close()

    # ---- the contract ----
    def test_records_come_back_whole(self, tmp_path, kind, make):
        records = [make(i, s) for s in STEPS for i in INSTANCES]
        self._write(tmp_path, records)
        store, run = self.read_back(tmp_path)
        assert run in [r for r, _ in store.runs()]
        assert kind in store.kinds(run)
        for r in records:
            got = store.record(run, kinds.as_record(r).subject, r.step, kind=kind)
            # per-subject arrays (DeepVID's neighbour images) included, though written once
            assert type(got) is type(r) and got == r, (r.step,)

    def test_overview_lists_every_instance_and_step(self, tmp_path, kind, make):
        records = [make(i, s, class_names=[f"c{k}" for k in range(10)])
                   for s in STEPS for i in INSTANCES]
        self._write(tmp_path, records)
        store, run = self.read_back(tmp_path)
        ov = store.overview(run, kind=kind)
        assert ov.class_names == [f"c{k}" for k in range(10)] and ov.warnings == []
        assert sorted(i.id for i in ov.instances) == sorted(INSTANCES)
        # Instance kinds are drawn in the instance grid, which needs each row's picture and each
        # cell's prediction, thumbnail and evidence; layer and class kinds (their own pages) only
        # owe what every summary has, so they need no stand-ins for fields they do not have.
        grid = kinds.get(kind).subject == "instance"
        for inst in ov.instances:
            mine = [kinds.as_record(r) for r in records if kinds.as_record(r).subject == inst.id]
            assert inst.label == kinds.subject_header(mine[0])["label"]
            if grid:
                assert inst.image.shape == (1, 28, 28)
            assert [s["step"] for s in inst.steps] == list(STEPS)
            previous = None
            for s, r in zip(inst.steps, mine, strict=True):
                expect = kinds.summarize(r, previous)
                if grid:
                    assert s["predicted"] == expect["predicted"]
                    assert s["changed"] == expect["changed"]
                    assert s["thumb"] == expect["thumb"] and s["fidelity"] == expect["fidelity"]
                assert s["headline"] == expect["headline"]
                previous = expect

    def test_kinds_are_kept_apart(self, tmp_path, kind, make):
        others = [k for k in KINDS if k != kind]
        assert others  # the registry has at least two kinds to tell apart
        self._write(tmp_path, [make("a", 0)] + [FACTORIES[k]("a", 0) for k in others])
        store, run = self.read_back(tmp_path)
        assert sorted(store.kinds(run)) == sorted(KINDS)
        for k in KINDS:
            assert store.record(run, "a", 0, kind=k) == FACTORIES[k]("a", 0)
            assert [i.id for i in store.overview(run, kind=k).instances] == ["a"]

    def test_flush_makes_records_visible_before_close(self, tmp_path, kind, make):
        sink = self.make_sink(tmp_path)
        try:
            sink.write(make("a", 0), 0)
            sink.flush()
            store, run = self.read_back(tmp_path)
            assert store.record(run, "a", 0, kind=kind) == make("a", 0)
        finally:
            sink.close()

    def test_the_step_argument_is_the_stored_step(self, tmp_path, kind, make):
        sink = self.make_sink(tmp_path)
        sink.write(make("a", 0), 3)
        sink.close()
        store, run = self.read_back(tmp_path)
        assert store.record(run, "a", 3, kind=kind).step == 3

    def test_unknown_things_are_key_errors(self, tmp_path, kind, make):
        self._write(tmp_path, [make("a", 0)])
        store, run = self.read_back(tmp_path)
        other = next(k for k in KINDS if k != kind)
        for call in (lambda: store.overview(run + "-nope", kind=kind),
                     lambda: store.overview(run, kind=other),  # no data of that kind
                     lambda: store.record(run, "zz", 0, kind=kind),
                     lambda: store.record(run, "a", 1, kind=kind)):
            with pytest.raises(KeyError):
                call()

    def test_newer_schema_is_reported_and_the_rest_served(self, tmp_path, kind, make):
        self._write(tmp_path, [make("a", 0), make("a", 1, schema_version=SCHEMA_VERSION + 1),
                               make("a", 2)])
        store, run = self.read_back(tmp_path)
        with pytest.warns(UserWarning, match=f"schema_version {SCHEMA_VERSION + 1}"):
            ov = store.overview(run, kind=kind)
        assert [s["step"] for s in ov.instances[0].steps] == [0, 2]
        assert any(f"schema_version {SCHEMA_VERSION + 1}" in w for w in ov.warnings)
        with pytest.raises(NewerSchemaError):
            store.record(run, "a", 1, kind=kind)
        assert store.record(run, "a", 2, kind=kind) == make("a", 2)

    def test_bad_input_and_close(self, tmp_path, kind, make):
        sink = self.make_sink(tmp_path)
        with pytest.raises(TypeError, match="record"):
            sink.write(np.zeros(3), 0)
        with pytest.raises(TypeError, match="step"):
            sink.write(make(), 1.5)
        sink.close()
        sink.close()  # idempotent
        with pytest.raises(ValueError, match="close"):
            sink.write(make(), 0)


class TestTensorBoardSink(SinkContract):
    def make_sink(self, tmp_path):
        from deepvid_plugin.tensorboard.summary import TensorBoardSink

        return TensorBoardSink(str(tmp_path / "run"))

    def read_back(self, tmp_path):
        from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
        from tensorboard.backend.event_processing.plugin_event_multiplexer import (
            EventMultiplexer,
        )

        from deepvid_plugin.tensorboard.store import DataProviderStore

        mux = EventMultiplexer(tensor_size_guidance={"deepvid": 0})
        mux.AddRunsFromDirectory(str(tmp_path))
        mux.Reload()
        return DataProviderStore(MultiplexerDataProvider(mux, str(tmp_path))), "run"


class TestMLflowSink(SinkContract):
    """Against a real ``mlflow server`` (sqlite + proxied artifacts), read back over HTTP."""

    @pytest.fixture(autouse=True)
    def _mlflow(self, mlflow_server, monkeypatch):
        import uuid

        monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.client = mlflow_server.client()
        self.experiment = self.client.create_experiment(f"contract-{uuid.uuid4().hex}")
        self.runs: dict[str, str] = {}

    def make_sink(self, tmp_path):
        from deepvid_plugin.mlflow.sink import MLflowSink

        run = self.client.create_run(self.experiment, run_name=tmp_path.name)
        self.runs[str(tmp_path)] = run.info.run_id
        return MLflowSink(run.info.run_id, client=self.client, viewer_every=0)

    def read_back(self, tmp_path):
        from deepvid_plugin.mlflow.store import MLflowStore

        return MLflowStore(self.client), self.runs[str(tmp_path)]
