"""stemstream's engine: ring buffers, framer, separators, mixer; numpy only.

torch, onnxruntime, sounddevice, Qt and pedalboard are imported by the modules
at the edges that need them, never here. The public Python API is ``api.py``
(``import stemstream``); docs/ARCHITECTURE.md shows the layers.
"""

__version__ = "0.1.0"
