"""syncse-ray: SynCSE on Ray."""
__version__ = "0.1.0"
