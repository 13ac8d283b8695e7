"""Bundled weights whose licence limits use (the MIR-1K students and teacher, the diffusion model) are
opt-in: nothing lists, picks or loads them until `stemstream install NAME --accept-licence` copied them
into the user's model folder (sha256 checked); every run that uses them says the licence.

Every test here starts from the empty model folder conftest.py gives each test, or a folder of its own.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_engine.separators import registry, research
from stream_engine.separators.base import SeparatorError

REPO = Path(__file__).resolve().parents[1]
OPT_IN = ("stemstream-student", "stemstream-student-int8", "stemstream-teacher", "stemstream-diffusion")
LIVE_STUDENT = "stemstream-student-int8"


def cli(*args, models: Path, timeout: int = 300):
    env = dict(os.environ, STEMSTREAM_MODELS_DIR=str(models), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "stream_engine.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=timeout)


def song(path: Path, seconds: float = 1.0, rate: int = 44100) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    voice = 0.3 * np.sin(2 * np.pi * 330 * t)
    sf.write(path, np.stack([voice + 0.05 * np.sin(2 * np.pi * 110 * t), voice], axis=1), rate)
    return path


def test_the_four_research_models_are_the_opt_in_ones():
    """The registry finds them by their cards' licence (research use), not by a list kept elsewhere."""
    assert set(research.opt_in_models()) == set(OPT_IN)
    for name in OPT_IN:
        assert "research" in registry.restricted_licence(name)


def test_install_refuses_without_accepting_the_licence_and_writes_nothing(tmp_path):
    models = tmp_path / "models"
    for name in (LIVE_STUDENT, research.ALL):
        run = cli("install", name, models=models)
        assert run.returncode == 2, run.stdout + run.stderr
        assert "research use" in run.stdout  # the licence, said before anything else
        assert "--accept-licence" in run.stderr and "not installed" in run.stderr
        assert not models.exists()  # not even the folder
    for name in OPT_IN:  # research-models says each model's own licence (the diffusion model's differs)
        assert f"{name}: licence: {registry.restricted_licence(name)}" in run.stdout
    # an existing install is left as it was by a refused one
    assert cli("install", "stemstream-teacher", "--accept-licence", models=models).returncode == 0
    before = sorted(p.relative_to(models) for p in models.rglob("*"))
    assert cli("install", research.ALL, models=models).returncode == 2
    assert sorted(p.relative_to(models) for p in models.rglob("*")) == before


def test_without_the_install_the_live_default_is_dsp_center_and_asking_by_name_says_how_to_install(tmp_path):
    import stemstream
    from stream_engine.osc.server import osc_model_choice

    assert registry.default_model("live") == "dsp-center"
    assert not set(OPT_IN) & set(registry.available()) and not set(OPT_IN) & set(registry.bundled_models())
    for name in OPT_IN:
        how = f"stemstream install {name} --accept-licence"
        for ask in (lambda: registry.load_separator(name, "offline"), lambda: registry.model_stems(name),
                    lambda: stemstream.Separator(name)):
            with pytest.raises(SeparatorError, match=how):
                ask()
        with pytest.raises(ValueError, match=how):  # over OSC: a name only, answered with the command
            osc_model_choice(name)
    listed = cli("models", models=tmp_path / "none")
    assert listed.returncode == 0, listed.stderr
    assert "default for live: dsp-center" in listed.stdout
    line = next(x for x in listed.stdout.splitlines() if x.startswith(f"{LIVE_STUDENT} "))
    assert "not installed" in line and f"stemstream install {LIVE_STUDENT} --accept-licence" in line
    wav = song(tmp_path / "song.wav")
    for args in (("separate", wav, "--out", tmp_path / "out", "--model", "stemstream-student", "--quiet"),
                 ("bench", "--model", LIVE_STUDENT, "--seconds", "1"),
                 ("bench", "--switch"),  # its default model is the int8 student: said before a JACK server starts
                 ("eval", tmp_path, "--model", "stemstream-teacher", "--profile", "quality", "--quiet")):
        run = cli(*args, models=tmp_path / "none")
        assert run.returncode == 2, run.stdout + run.stderr
        assert "stemstream install stemstream-" in run.stderr and "Traceback" not in run.stderr
    # the default still runs: separate without --model at the live profile uses dsp-center
    run = cli("separate", wav, "--out", tmp_path / "out", "--profile", "live", "--quiet", models=tmp_path / "none")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "song" / "vocals.wav").is_file() and "licence" not in run.stderr


def test_install_lists_the_copy_makes_the_student_the_live_default_and_remove_takes_it_back(tmp_path,
                                                                                          monkeypatch):
    models = tmp_path / "models"
    run = cli("install", LIVE_STUDENT, "--accept-licence", models=models)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    done = next(i for i, line in enumerate(lines) if f"{LIVE_STUDENT}: installed " in line)
    assert "licence: research use" in lines[0] and "licence: research use" in lines[done + 1]  # before and after
    assert f"{LIVE_STUDENT} is now the live profile's default model" in run.stdout
    packaged = Path(research.opt_in_models()[LIVE_STUDENT]["path"])
    installed = models / LIVE_STUDENT / packaged.name
    assert installed.read_bytes() == packaged.read_bytes()
    assert json.loads(installed.with_suffix(".json").read_text())["sha256"] == \
        json.loads(packaged.with_suffix(".json").read_text())["sha256"]

    monkeypatch.setenv("STEMSTREAM_MODELS_DIR", str(models))
    assert registry.bundled_models()[LIVE_STUDENT]["path"] == str(installed)  # the installed copy, not the package's
    assert registry.default_model("live") == LIVE_STUDENT
    assert "stemstream-student" not in registry.available()  # only what was installed
    assert registry.load_separator(None, "live").spec.name == LIVE_STUDENT
    listed = cli("models", models=models)
    assert f"default for live: {LIVE_STUDENT}" in listed.stdout
    # a folder in the model folder names nothing by itself: only the package's own names are looked for
    stray = models / "stray"
    stray.mkdir()
    (stray / "stray.json").write_text(installed.with_suffix(".json").read_text().replace(LIVE_STUDENT, "stray"))
    (stray / "installed.json").write_text("{}")
    (stray / "stray.onnx").write_bytes(installed.read_bytes())
    assert "stray" not in registry.available()

    removed = cli("install", LIVE_STUDENT, "--remove", models=models)
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert not (models / LIVE_STUDENT).exists() and registry.default_model("live") == "dsp-center"

    everything = cli("install", research.ALL, "--accept-licence", models=models)
    assert everything.returncode == 0, everything.stderr
    assert set(OPT_IN) <= set(registry.available())
    assert cli("install", research.ALL, "--remove", models=models).returncode == 0
    assert not set(OPT_IN) & set(registry.available())


def test_a_tampered_install_is_refused_and_a_damaged_package_copy_is_not_installed(tmp_path, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv("STEMSTREAM_MODELS_DIR", str(models))
    research.install(LIVE_STUDENT, accept_licence=True, log=lambda _line: None)
    weights = Path(registry.bundled_models()[LIVE_STUDENT]["path"])
    good = weights.read_bytes()
    weights.write_bytes(good[:-16] + bytes(16))  # the weights altered: their card's sha256 no longer matches
    with pytest.raises(SeparatorError, match="does not match its card"):
        registry.load_separator(LIVE_STUDENT, "live")
    card_path = weights.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["sha256"] = research.sha256_of(weights)  # ...and the card altered to match them
    card_path.write_text(json.dumps(card))
    with pytest.raises(SeparatorError, match="not the one in this package"):
        registry.load_separator(LIVE_STUDENT, "live")

    # the package's own copy damaged: the install checks the copy against the packaged card
    package = tmp_path / "package"
    package.mkdir()
    source = Path(research.opt_in_models()[LIVE_STUDENT]["path"])
    (package / source.name).write_bytes(good[:-16] + bytes(16))
    (package / f"{source.stem}.json").write_text(source.with_suffix(".json").read_text())
    monkeypatch.setattr(research, "PACKAGE_DIR", package)
    before = weights.read_bytes()
    with pytest.raises(research.InstallError, match="sha256"):
        research.install(LIVE_STUDENT, accept_licence=True, log=lambda _line: None)
    assert weights.read_bytes() == before and sorted(p.name for p in models.iterdir()) == [LIVE_STUDENT]


def test_every_run_of_an_installed_research_model_says_the_licence(research_models, tmp_path):
    """`separate` with the installed student says its licence on stderr; with dsp-center it says none."""
    wav = song(tmp_path / "song.wav")
    run = cli("separate", wav, "--out", tmp_path / "a", "--model", LIVE_STUDENT, "--profile", "live", "--quiet",
              models=Path(research_models))
    assert run.returncode == 0, run.stderr
    assert f"{LIVE_STUDENT}: licence: research use" in run.stderr
    assert (tmp_path / "a" / "song" / "vocals.wav").is_file()
    plain = cli("separate", wav, "--out", tmp_path / "b", "--model", "dsp-center", "--quiet",
                models=Path(research_models))
    assert plain.returncode == 0 and "licence" not in plain.stderr


def test_the_packages_copy_by_path_is_refused_and_a_copy_elsewhere_says_its_licence(tmp_path, capfd, monkeypatch):
    """Naming the package's file instead of the model does not skip the opt-in; a copy of the weights
    the user made (or a model they exported from MIR-1K) says the licence its card names on every run."""
    import shutil

    packaged = Path(research.opt_in_models()[LIVE_STUDENT]["path"])
    with pytest.raises(SeparatorError, match=f"stemstream install {LIVE_STUDENT} --accept-licence"):
        registry.load_separator(str(packaged), "live")
    monkeypatch.setenv("STEMSTREAM_MODELS_DIR", str(tmp_path / "models"))
    research.install(LIVE_STUDENT, accept_licence=True, log=lambda _line: None)
    with pytest.raises(SeparatorError, match="only the install's source"):
        registry.load_separator(str(packaged), "live")
    own = tmp_path / "mine" / "student.onnx"
    own.parent.mkdir()
    shutil.copyfile(packaged, own)
    shutil.copyfile(packaged.with_suffix(".json"), own.with_suffix(".json"))
    capfd.readouterr()
    assert registry.load_separator(str(own), "live").spec.name == LIVE_STUDENT
    assert f"{own}: licence: research use" in capfd.readouterr().err


def test_the_app_offers_only_installed_research_models_and_its_default_follows(qtbot, tmp_path, monkeypatch):
    """The app's model boxes list an opt-in model only once installed; the 'default' entry says what
    the live profile runs (dsp-center before, the int8 student after)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    pytest.importorskip("PySide6")
    from gui_windows import window_factory

    monkeypatch.setenv("STEMSTREAM_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("STEMSTREAM_MODELS_DIR", str(tmp_path / "models"))
    factory = window_factory(qtbot)
    make = next(factory)
    try:
        for installed in (False, True):
            if installed:
                research.install(LIVE_STUDENT, accept_licence=True, log=lambda _line: None)
            w = make("--model", "dsp-center", "--profile", "live", "--no-key-shift")
            for box in (w.live.model_box, w.files.model_box):
                offered = {box.itemData(i) for i in range(box.count())}
                assert (LIVE_STUDENT in offered) is installed and "stemstream-teacher" not in offered
            default_tip = w.live.model_box.itemData(0, 3)  # 3: Qt.ToolTipRole
            assert f"live: {LIVE_STUDENT if installed else 'dsp-center'}" in default_tip
    finally:
        next(factory, None)  # shuts the windows down
