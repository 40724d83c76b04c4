"""stereodistill: distil large stereo-matching networks into lean, fast students."""

__version__ = "0.1.0"
