"""The special entries of the Live tab's model and input boxes, and what a chosen model yields.

Shared by the window and its parts (``gui.model_choice``, ``gui.device_choice``,
``gui.live_control``), so none of them imports the window.
"""

from __future__ import annotations

MODEL_FILE = "__model_file__"
INPUT_FILE = "__input_file__"


def stems_for(model: str | None, profile: str = "live") -> tuple[str, ...]:
    """The stems a model will produce (the strips to build), without loading its weights.

    A model whose stems cannot be told before loading gets two strips for now;
    the session rebuilds them from the loaded model when it starts.
    """
    from stream_engine.separators.base import SeparatorError
    from stream_engine.separators.registry import model_stems

    if profile == "auto":  # a song's choice (a device's live default has the same two stems)
        from stream_engine.separators.registry import file_input_choice

        choice = file_input_choice()
        model, profile = model or choice["model"], choice["profile"]
    try:
        return model_stems(model, profile)
    except (SeparatorError, ValueError):
        return ("vocals", "accompaniment")
