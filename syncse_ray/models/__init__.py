"""Models: references to local folders (`references.py`: bundled:<name>, a folder, a hub name), the poolers
(`pooling.py`, one implementation for train, eval and serve) and the encoder every stage loads
(`encoders.py`: `load_encoder`). No Ray."""
