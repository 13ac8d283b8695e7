"""Training pipeline: data loading, augmentation, a few steps that lower the loss, checkpoints, commands."""

import argparse
import json
import shlex

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from stream_engine.training import data as D  # noqa: E402
from stream_engine.training.fixtures import make_stem_folder  # noqa: E402
from stream_engine.training.models import StreamingStudent, TFCTDFNet, count_parameters  # noqa: E402
from stream_engine.training.train import (PRESETS, distill_weight, load_checkpoint, load_config,  # noqa: E402
                                          model_from_checkpoint, online_targets, sdr_loss, separate_full,
                                          separation_loss, teacher_confidence, train)


@pytest.fixture(scope="module")
def stems_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("stems")
    make_stem_folder(root / "train", tracks=4, seconds=2.0, seed=1)
    make_stem_folder(root / "valid", tracks=2, seconds=1.5, seed=2)
    return root


def test_folder_loader_trims_and_sums(stems_dir):
    tracks = D.load_stem_folder(stems_dir / "train")
    assert len(tracks) == 4
    for t in tracks:
        lengths = {v.shape[-1] for v in t.stems.values()}
        assert len(lengths) == 1  # trimmed to the shortest stem
        assert t.stems["vocals"].shape[0] == 1
        np.testing.assert_allclose(t.mix(), t.stems["vocals"] + t.stems["accompaniment"], atol=1e-7)
    assert tracks[0].length == 32000 - 37


def test_folder_loader_uses_mixture_file_and_derives_accompaniment(tmp_path):
    import soundfile as sf

    d = tmp_path / "song"
    d.mkdir()
    rng = np.random.default_rng(0)
    parts = {k: rng.standard_normal(1000).astype(np.float32) * 0.1 for k in ("vocals", "drums", "bass", "other")}
    for k, v in parts.items():
        sf.write(d / f"{k}.wav", v, 16000, subtype="FLOAT")
    sf.write(d / "mixture.wav", sum(parts.values()), 16000, subtype="FLOAT")
    (t,) = D.load_stem_folder(tmp_path)
    np.testing.assert_allclose(t.stems["accompaniment"][0], parts["drums"] + parts["bass"] + parts["other"],
                               atol=1e-6)
    assert t.mixture is not None


def test_missing_folder_and_musdb_messages(tmp_path):
    with pytest.raises(FileNotFoundError):
        D.load_stem_folder(tmp_path / "nope")
    try:
        import musdb  # noqa: F401
    except (ImportError, RuntimeError):  # absent, or present without ffmpeg
        with pytest.raises(ImportError, match="pip install musdb"):
            D.load_tracks("musdb:" + str(tmp_path))


def test_sampler_augments_and_keeps_the_sum(stems_dir):
    tracks = D.load_stem_folder(stems_dir / "train")
    s = D.StemSampler(tracks, ("vocals", "accompaniment"), 4000, D.AugmentConfig(eq=1.0, pitch=0.5), seed=3)
    mix, stems, index = s.draw(6, return_index=True, clean_frac=0.5)
    assert mix.shape == (6, 1, 4000) and stems.shape == (6, 2, 1, 4000)
    np.testing.assert_allclose(mix, stems.sum(1), atol=1e-6)
    # clean examples: both stems are the original excerpt times one gain
    for b in range(3):
        ti, start, g = index[b]
        t = s.tracks[int(ti)]
        ref = t.stems["vocals"][:, int(start): int(start) + 4000] * g
        np.testing.assert_allclose(stems[b, 0, :, : ref.shape[-1]], ref, atol=1e-6)
    assert (index[3:, 0] == -1).all()
    # same seed, same batch
    s2 = D.StemSampler(tracks, ("vocals", "accompaniment"), 4000, D.AugmentConfig(eq=1.0, pitch=0.5), seed=3)
    np.testing.assert_array_equal(s2.draw(6, clean_frac=0.5)[0], mix)


def test_validation_set_is_fixed(stems_dir):
    tracks = D.load_stem_folder(stems_dir / "valid")
    a = D.validation_set(tracks)
    b = D.validation_set(list(reversed(tracks)))
    assert [x[0] for x in a] == [x[0] for x in b]


@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_a_few_steps_lower_the_loss(stems_dir, kind):
    torch.manual_seed(0)
    tracks = D.load_stem_folder(stems_dir / "train")
    if kind == "teacher":
        model = TFCTDFNet(n_fft=256, hop=64, channels=4, growth=4, levels=2, tfc_layers=1, bottleneck=4)
        lat = 0
    else:
        model = StreamingStudent(n_fft=64, hop=16, ctx_fft=128, hidden=32, layers=1)
        lat = model.latency
    s = D.StemSampler(tracks, ("vocals", "accompaniment"), 8000 + lat, seed=0)
    mix, ref = (torch.from_numpy(a) for a in s.draw(4))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(25):
        est = model(mix)
        e, r = (est[..., lat:], ref[..., :-lat]) if lat else (est, ref)
        loss = separation_loss(e, r)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_train_checkpoint_resume_and_distill(stems_dir, tmp_path):
    over = {"data": str(stems_dir / "train"), "valid": str(stems_dir / "valid"), "steps": 4, "val_every": 2}
    cfg = load_config("tiny-teacher", over)
    res = train(cfg, tmp_path / "t", progress=False, log=lambda *a: None)
    assert len(res["history"]) == 2
    ck = load_checkpoint(tmp_path / "t" / "last.pt")  # weights_only=True inside
    assert ck["step"] == 4 and ck["kind"] == "teacher"
    # resume: continue to 6 steps from step 4
    res2 = train({**cfg, "steps": 6}, tmp_path / "t", resume=True, progress=False, log=lambda *a: None)
    assert [h["step"] for h in res2["history"]] == [2, 4, 6]
    # distillation from that teacher
    scfg = load_config("tiny-student", {**over, "distill": {"teacher": str(tmp_path / "t" / "best.pt"),
                                                            "weight": 0.5}})
    res3 = train(scfg, tmp_path / "s", progress=False, log=lambda *a: None)
    assert (tmp_path / "s" / "teacher_targets.npz").is_file()
    assert np.isfinite(res3["best"])


def test_online_distillation_labels_each_augmented_batch(stems_dir, tmp_path):
    over = {"data": str(stems_dir / "train"), "valid": str(stems_dir / "valid"), "steps": 2, "val_every": 2}
    train(load_config("tiny-teacher", over), tmp_path / "t", progress=False, log=lambda *a: None)
    teacher, _ = model_from_checkpoint(tmp_path / "t" / "best.pt")
    mix = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 1, 4000)).astype(np.float32))
    soft = online_targets(teacher, mix)
    assert soft.shape == (3, 2, 1, 4000)
    torch.testing.assert_close(soft.sum(dim=1), mix, atol=1e-5, rtol=0)  # targets add up to the mixture
    torch.testing.assert_close(soft[1, 0], torch.from_numpy(separate_full(teacher, mix[1].numpy())[0]),
                               atol=1e-5, rtol=0)  # batched == one excerpt at a time
    # Same seed and batches with and without the teacher: only the soft targets differ.
    online = {"teacher": str(tmp_path / "t" / "best.pt"), "weight": 1.0, "online": True, "items": 2}
    runs = {}
    for name, distill in (("plain", None), ("online", online)):
        train(load_config("tiny-student", {**over, "steps": 3, "distill": distill}), tmp_path / name,
              progress=False, log=lambda *a: None)
        runs[name] = load_checkpoint(tmp_path / name / "last.pt")["model"]
    assert not (tmp_path / "online" / "teacher_targets.npz").exists()  # nothing cached: labelled per batch
    assert any(not torch.equal(runs["plain"][k], runs["online"][k]) for k in runs["plain"])


def test_teacher_confidence_trusts_the_teacher_where_it_is_ahead():
    rng = np.random.default_rng(3)
    truth = torch.from_numpy(rng.standard_normal((3, 2, 1, 4000)).astype(np.float32))
    noise = torch.from_numpy(rng.standard_normal(truth.shape).astype(np.float32))
    student = truth + 0.3 * noise  # about 10.5 dB
    teacher = truth + torch.tensor([0.1, 0.3, 1.0]).view(3, 1, 1, 1) * noise  # ~20 dB, the same, ~0 dB
    trust = teacher_confidence(student, teacher, truth, margin_db=2.0)
    assert trust.tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert teacher_confidence(student, truth + 0.25 * noise, truth, 2.0).tolist() == pytest.approx(
        [0.79] * 3, abs=0.02)  # 20 log10(0.3 / 0.25) = 1.58 dB ahead of the student: 1.58 / 2
    assert teacher_confidence(student, teacher, truth, 0.0).tolist() == [1.0, 0.0, 0.0]  # a hard gate
    # per-excerpt losses average to the batch loss
    for loss in (sdr_loss, separation_loss):
        assert float(loss(student, truth, per_item=True).mean()) == pytest.approx(float(loss(student, truth)),
                                                                                   rel=1e-5)


def test_confidence_weighted_distillation_trains_and_logs_the_trust(stems_dir, tmp_path):
    over = {"data": str(stems_dir / "train"), "valid": str(stems_dir / "valid"), "steps": 2, "val_every": 2}
    train(load_config("tiny-teacher", over), tmp_path / "t", progress=False, log=lambda *a: None)
    distill = {"teacher": str(tmp_path / "t" / "best.pt"), "weight": 0.5, "online": True, "items": 2,
               "confidence_db": 2.0}
    res = train(load_config("tiny-student", {**over, "distill": distill}), tmp_path / "s", progress=False,
                log=lambda *a: None)
    assert 0.0 <= res["history"][-1]["teacher_trust"] <= 1.0


def test_recipe_files_may_build_on_each_other(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"base": "tiny-student", "lr": 0.01, "augment": {"eq": 0.5}}))
    (tmp_path / "b.json").write_text(json.dumps({"base": "a.json", "seed": 9, "augment": {"pitch": 0.2}}))
    cfg = load_config(str(tmp_path / "b.json"))
    assert (cfg["lr"], cfg["seed"], cfg["augment"]["eq"], cfg["augment"]["pitch"]) == (0.01, 9, 0.5, 0.2)
    assert cfg["model_cfg"] == PRESETS["tiny-student"]["model_cfg"]
    (tmp_path / "c.json").write_text(json.dumps({"base": "d.json"}))
    (tmp_path / "d.json").write_text(json.dumps({"base": "c.json"}))
    with pytest.raises(ValueError, match="loops back"):
        load_config(str(tmp_path / "c.json"))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_config(str(tmp_path / "missing.json"))


def test_sdr_loss_is_the_negative_metric():
    from stream_engine.metrics import sdr

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 2, 1, 4000)).astype(np.float32)
    est = ref + 0.1 * rng.standard_normal(ref.shape).astype(np.float32)
    want = -np.mean([sdr(ref[b, s], est[b, s]) for b in range(2) for s in range(2)])
    got = float(sdr_loss(torch.from_numpy(est), torch.from_numpy(ref)))
    assert abs(got - want) < 1e-3
    # a silent reference stem scores near 0 dB, not -inf, so one excerpt cannot swamp the batch
    ref[0, 0] = 0
    assert np.isfinite(float(sdr_loss(torch.from_numpy(est), torch.from_numpy(ref))))


def test_fine_tuning_starts_from_a_checkpoint(stems_dir, tmp_path):
    over = {"data": str(stems_dir / "train"), "valid": str(stems_dir / "valid"), "steps": 2, "val_every": 2}
    train(load_config("tiny-student", over), tmp_path / "base", progress=False, log=lambda *a: None)
    init = tmp_path / "base" / "best.pt"
    # one step at learning rate 0: the run's weights are the checkpoint's, not a fresh initialisation
    logs = []
    train(load_config("tiny-student", {**over, "init": str(init), "loss": "sdr", "steps": 1, "lr": 0.0,
                                       "seed": 7}), tmp_path / "ft", progress=False, log=logs.append)
    assert any("weights from" in str(line) for line in logs)
    want, got = load_checkpoint(init)["model"], load_checkpoint(tmp_path / "ft" / "best.pt")["model"]
    assert all(torch.equal(want[k], got[k]) for k in want)
    with pytest.raises(ValueError, match="best.pt"):  # a checkpoint of another model names itself
        train(load_config("tiny-teacher", {**over, "init": str(init)}), tmp_path / "bad", progress=False,
              log=lambda *a: None)


def test_weight_average_is_what_validation_scores_and_best_holds(stems_dir, tmp_path):
    over = {"data": str(stems_dir / "train"), "valid": str(stems_dir / "valid"), "steps": 4, "val_every": 4,
            "ema": 0.5}
    train(load_config("tiny-teacher", over), tmp_path / "e", progress=False, log=lambda *a: None)
    last, best = load_checkpoint(tmp_path / "e" / "last.pt"), load_checkpoint(tmp_path / "e" / "best.pt")
    assert int(last["ema"]["n_averaged"]) == 4
    averaged = {k[len("module."):]: v for k, v in last["ema"].items() if k.startswith("module.")}
    assert all(torch.equal(best["model"][k], averaged[k]) for k in best["model"])  # best.pt: the average
    assert any(not torch.equal(best["model"][k], last["model"][k]) for k in best["model"])  # not the raw weights
    model, _ = model_from_checkpoint(tmp_path / "e" / "best.pt")  # loads like any checkpoint
    assert separate_full(model, np.zeros((1, 800), np.float32)).shape == (2, 1, 800)
    # resume carries the average on: 2 more updates
    train({**load_config("tiny-teacher", over), "steps": 6, "val_every": 2}, tmp_path / "e", resume=True,
          progress=False, log=lambda *a: None)
    assert int(load_checkpoint(tmp_path / "e" / "last.pt")["ema"]["n_averaged"]) == 6
    with pytest.raises(ValueError, match="ema"):
        train(load_config("tiny-teacher", {**over, "ema": 1.5}), tmp_path / "bad", progress=False,
              log=lambda *a: None)


def test_train_is_seeded(stems_dir, tmp_path):
    over = {"data": str(stems_dir / "train"), "valid": str(stems_dir / "valid"), "steps": 2, "val_every": 2}
    a = train(load_config("tiny-student", over), tmp_path / "a", progress=False, log=lambda *a: None)
    b = train(load_config("tiny-student", over), tmp_path / "b", progress=False, log=lambda *a: None)
    assert a["history"][-1]["loss"] == b["history"][-1]["loss"]


def test_presets_fit_the_targets():
    s = StreamingStudent(**PRESETS["student"]["model_cfg"])
    assert count_parameters(s) <= 2_000_000
    assert s.latency / 16000 <= 0.012 + 1e-9
    assert PRESETS["student-nodistill"]["distill"] is None
    assert PRESETS["student-nodistill"]["model_cfg"] == PRESETS["student"]["model_cfg"]


def test_distill_weight_follows_its_schedule():
    assert distill_weight({"weight": 0.5}, 0.9) == 0.5
    curriculum = {"weight": 1.0, "weight_end": 0.0}
    assert [distill_weight(curriculum, p) for p in (0.0, 0.25, 1.0)] == [1.0, 0.75, 0.0]


def test_commands(stems_dir, tmp_path, capsys):
    from stream_engine.training.commands import add_parsers

    ap = argparse.ArgumentParser()
    add_parsers(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["train", "tiny-student", "--data", str(stems_dir / "train"), "--valid",
                          str(stems_dir / "valid"), "--out", str(tmp_path / "run"), "--steps", "2", "--val-every",
                          "2", "--no-progress"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["parameters"] > 0
    args = ap.parse_args(["export", str(tmp_path / "run" / "best.pt"), "--out", str(tmp_path / "exp"),
                          "--name", "tiny", "--formats", "onnx"])
    assert args.func(args) == 0
    card = json.loads((tmp_path / "exp" / "tiny.json").read_text())
    assert card["stateful"] and card["command"]
    # which variant is the default of which profile is the export's choice, written into the cards
    argv = ["export", str(tmp_path / "run" / "best.pt"), "--out", str(tmp_path / "exp2"), "--name", "tiny",
            "--formats", "onnx,int8", "--default-for", "int8=live", "--default-for", "onnx=balanced",
            "--command-text", "stemstream train tiny-student --out 'runs/a b' && echo done"]
    args = ap.parse_args(argv)
    args._argv = argv
    assert args.func(args) == 0
    cards = {n: json.loads((tmp_path / "exp2" / f"{n}.json").read_text()) for n in ("tiny", "tiny-int8")}
    assert {n: c["default_for"] for n, c in cards.items()} == {"tiny": ["balanced"], "tiny-int8": ["live"]}
    # the recorded export command gives back the same arguments, --command-text's spaces and quotes included
    assert shlex.split(cards["tiny"]["export_command"]) == ["stemstream", *argv]
    args = ap.parse_args(["export", str(tmp_path / "run" / "best.pt"), "--out", str(tmp_path / "exp3"),
                          "--default-for", "int8=concert"])
    assert args.func(args) == 2
    assert "unknown profile 'concert'" in capsys.readouterr().err
    args = ap.parse_args(["train", "no-such-preset", "--out", str(tmp_path / "x")])
    assert args.func(args) == 2
    assert "neither a preset" in capsys.readouterr().err
    args = ap.parse_args(["train", "tiny-student", "--online-teacher", "--out", str(tmp_path / "y")])
    assert args.func(args) == 2
    assert "--online-teacher needs --teacher" in capsys.readouterr().err


def test_sources_with_shares_and_silent_stems(tmp_path):
    """A config's data may list sources: each gets its share of the excerpts; an instrumental
    folder (accompaniment only) trains with silent vocals."""
    import soundfile as sf

    make_stem_folder(tmp_path / "songs", tracks=3, seconds=2.0, seed=3)
    inst = tmp_path / "instrumental" / "piece"
    inst.mkdir(parents=True)
    sf.write(inst / "accompaniment.wav", np.full(16000, 0.1, np.float32), 16000)
    tracks = D.load_sources([{"path": str(tmp_path / "songs"), "share": 0.25},
                             {"path": str(tmp_path / "instrumental"), "share": 0.75, "silent": ["vocals"]}],
                            stems=("vocals", "accompaniment"), sample_rate=16000, channels=2)
    assert len(tracks) == 4
    (piece,) = [t for t in tracks if t.name == "piece"]
    assert piece.stems["vocals"].shape == (2, 16000) and not piece.stems["vocals"].any()
    sampler = D.StemSampler(tracks, ("vocals", "accompaniment"), 8000)
    assert sampler.weights[[t.name == "piece" for t in sampler.tracks]].sum() == pytest.approx(0.75)
    with pytest.raises(FileNotFoundError):  # without "silent" the folder has no vocals
        D.load_sources([str(tmp_path / "instrumental")], stems=("vocals", "accompaniment"))


def test_label_writes_teacher_stems_that_sum_to_the_mixture(tmp_path, capsys):
    """stemstream label: a teacher's vocals, accompaniment = mixture - vocals; a rerun skips done tracks."""
    from stream_engine.cli import main
    from stream_engine.evaluate import load_track

    make_stem_folder(tmp_path / "songs", tracks=2, seconds=1.0, seed=4)
    assert main(["label", str(tmp_path / "songs"), "--out", str(tmp_path / "labels"), "--model", "dsp-center",
                 "--profile", "quality"]) == 0
    done = sorted((tmp_path / "labels" / "songs").iterdir())
    assert len(done) == 2
    for folder in done:
        labels, _ = load_track(folder)
        truth, _ = load_track(tmp_path / "songs" / folder.name)
        mix = truth["vocals"] + truth["accompaniment"]
        np.testing.assert_allclose(labels["vocals"] + labels["accompaniment"], mix, atol=1e-4)
        assert np.abs(labels["vocals"]).sum() > 0
    capsys.readouterr()
    assert main(["label", str(tmp_path / "songs"), "--out", str(tmp_path / "labels"), "--model", "dsp-center",
                 "--profile", "quality"]) == 0
    assert "labelled" not in capsys.readouterr().err
