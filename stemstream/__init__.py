"""stemstream: separate music into stems, in your own Python program.

    import stemstream

    sep = stemstream.Separator()                  # model=None: the best installed for the profile
    stems = sep.separate(audio, sample_rate)      # {"vocals": ..., "accompaniment": ..., "instrumental": ..., "karaoke": ...}
    sep.separate_file("song.flac", out="stems")   # what `stemstream separate song.flac --out stems` writes
    stream = sep.stream(48000, channels=2, block=256)
    out = stream.process(block)                   # block by block, ``stream.latency`` late

    stemstream.list_models()                      # what Separator(model=...) can load

Every error raised on purpose is a ``stemstream.StemstreamError``. The
implementation is ``stream_engine.api`` (the engine's top layer); see its
docstrings, and README.md, "Python API".
"""

from stream_engine import __version__
from stream_engine.api import (ArgumentError, AudioFileError, ModelInfo, OutputError, Separator, SeparatorError,
                               StemstreamError, Stream, list_models)

__all__ = ["Separator", "Stream", "ModelInfo", "list_models", "StemstreamError", "ArgumentError",
           "SeparatorError", "AudioFileError", "OutputError", "__version__"]
