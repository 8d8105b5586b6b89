"""`bench ui`: loopback unless told otherwise (with a warning then), MLflow's server run light,
the experiment tagged for the model-training view, and a busy port answered in one line."""

import json
import socket

import pytest

from bench import cli
from bench.store import client, default_uri
from bench.tracking import KIND, KIND_TAG, VIEW_TAG, start_parent


class FakeServer:
    """Stands in for the `mlflow server` process: records how it was started, exits at once."""

    started: list = []

    def __init__(self, argv, env=None, **kwargs):
        FakeServer.started.append((argv, env))
        self.pid = 0

    def poll(self):
        return 0

    def wait(self):
        return 0


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    """An experiment folder made before bench tagged experiments for the UI."""
    uri = default_uri(tmp_path)
    experiment_id = client(uri).create_experiment("e")
    start_parent(uri, experiment_id, "e:seeds", {"bench.session": "s"})
    (tmp_path / "experiment.json").write_text(json.dumps(
        {"session": "s", "tracking_uri": uri, "experiment": "e", "options": {"variants": []},
         "folder": str(tmp_path.resolve())}))
    FakeServer.started = []
    monkeypatch.setattr("subprocess.Popen", FakeServer)
    return tmp_path, uri, experiment_id


def test_ui_serves_light_on_loopback_and_tags_the_experiment(experiment):
    out, uri, experiment_id = experiment
    assert cli.main(["ui", "--output", str(out), "--port", "0"]) == 0
    [(argv, env)] = FakeServer.started
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--backend-store-uri") + 1] == uri
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    tags = client(uri).get_experiment(experiment_id).tags
    assert tags[KIND_TAG] == KIND
    view = json.loads(tags[VIEW_TAG])
    assert view["orderByKey"] == "metrics.`eval/fid`" and view["orderByAsc"] is True
    assert view["selectedColumns"][:2] == ["metrics.`eval/fid`", "attributes.`Models`"]


def test_ui_warns_when_exposed(experiment, capsys):
    out, _, _ = experiment
    assert cli.main(["ui", "--output", str(out), "--host", "0.0.0.0", "--port", "0"]) == 0
    assert "exposes" in capsys.readouterr().err


def test_a_busy_port_is_one_line(experiment, capsys):
    out, _, _ = experiment
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["ui", "--output", str(out), "--port", str(port)]) == 2
    assert capsys.readouterr().err.strip() == f"error: cannot serve on 127.0.0.1:{port}: Address already in use; " \
                                              "pass another --port"
    assert FakeServer.started == []
