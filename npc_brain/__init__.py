"""npc-brain: gives game NPCs their voice.

Data flows one way: request -> prompt -> generate -> reply. Serving needs only
onnxruntime, tokenizers, numpy, msgpack, pyzmq and Pillow; PyTorch lives in
``export/`` and ``npc_brain.train`` and is imported lazily.
"""

__version__ = "0.1.0"
