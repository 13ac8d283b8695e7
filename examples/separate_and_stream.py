"""stemstream's Python API in one page: separate an array, a file, and a stream block by block.

    python3 examples/separate_and_stream.py [AUDIO_FILE] [--model NAME]

Without a file it uses the bundled demo song. Writes nothing unless --out is
given. The test suite runs this script (tests/test_api.py).
"""

import argparse
import sys

import numpy as np
import soundfile as sf

import stemstream


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("audio", nargs="?", help="an audio file (default: the bundled demo song)")
    p.add_argument("--model", default="dsp-center", help="a name from stemstream.list_models() (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=4.0, help="how much of the file to use")
    p.add_argument("--out", help="also write the stems of the file here, as `stemstream separate` does")
    args = p.parse_args(argv)

    print("models:", ", ".join(m.name for m in stemstream.list_models()))
    if args.audio is None:
        from stream_engine.demo import DEMO_SONG

        args.audio = DEMO_SONG
    try:
        separator = stemstream.Separator(args.model)  # loads the model once
    except stemstream.StemstreamError as exc:  # an unknown model, broken weights: one type to catch
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{separator.name}: stems {separator.stems}, licence {separator.licence}")

    # 1. An array in memory: (channels, samples), any rate, any number of channels.
    frames, rate = sf.read(args.audio, dtype="float32", frames=int(args.seconds * sf.info(args.audio).samplerate),
                           always_2d=True)
    audio = frames.T  # soundfile gives (samples, channels)
    stems = separator.separate(audio, rate)
    for name, signal in stems.items():
        print(f"  {name:14s} {signal.shape}  rms {np.sqrt(np.mean(signal ** 2)):.4f}")
    mix = sum(stems[s] for s in separator.stems)
    print(f"  sum of the stems vs the input: max difference {np.abs(mix - audio).max():.2e}")

    # 2. A file, exactly as `stemstream separate FILE --out DIR` writes it.
    if args.out:
        for name, path in separator.separate_file(args.audio, out=args.out).items():
            print(f"  wrote {path}")

    # 3. Block by block, as an audio callback would: every call returns as many frames, `latency` late.
    #    (A low-latency stream would use Separator(model, profile="live"); here the same profile as above,
    #    so the streamed stems can be compared with the whole-signal ones.)
    block = 512
    stream = separator.stream(rate, channels=audio.shape[0], block=block)
    lag = stream.latency.samples
    print(f"stream: latency {lag} frames = {stream.latency.ms:.1f} ms ({stream.latency.describe()})")
    tail = -(-lag // block) * block  # silence pushed after the music brings its last frames out
    padded = np.concatenate([audio, np.zeros((audio.shape[0], tail + block - audio.shape[1] % block),
                                             np.float32)], axis=1)
    pieces = [stream.process(padded[:, i:i + block]) for i in range(0, padded.shape[1], block)]
    vocals = np.concatenate([piece["vocals"] for piece in pieces], axis=1)[:, lag:lag + audio.shape[1]]
    print(f"  streamed vocals vs whole-signal vocals: max difference {np.abs(vocals - stems['vocals']).max():.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
