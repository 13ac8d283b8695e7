"""stemstream's engine: ring buffers, framer, separators, mixer; numpy only.

torch, onnxruntime, sounddevice, Qt and pedalboard are imported by the modules
at the edges that need them, never here.
"""

__version__ = "0.1.0"
