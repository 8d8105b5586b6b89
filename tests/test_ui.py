"""`bench ui` binds to loopback unless told otherwise, and warns when told otherwise."""

import json

from bench import cli


def _fake_experiment(tmp_path):
    (tmp_path / "experiment.json").write_text(json.dumps(
        {"session": "s", "tracking_uri": "sqlite:///x.db", "experiment": "e", "options": {"variants": []}}))


def test_ui_binds_loopback_by_default(tmp_path, monkeypatch):
    _fake_experiment(tmp_path)
    calls = []
    monkeypatch.setattr("subprocess.call", lambda argv: calls.append(argv) or 0)
    assert cli.main(["ui", "--output", str(tmp_path)]) == 0
    argv = calls[0]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--backend-store-uri") + 1] == "sqlite:///x.db"


def test_ui_warns_when_exposed(tmp_path, monkeypatch, capsys):
    _fake_experiment(tmp_path)
    monkeypatch.setattr("subprocess.call", lambda argv: 0)
    assert cli.main(["ui", "--output", str(tmp_path), "--host", "0.0.0.0"]) == 0
    assert "exposes" in capsys.readouterr().err
