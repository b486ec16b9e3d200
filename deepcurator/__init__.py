"""DeepCurator: learn what will be sought-after on Discogs from the sound alone."""

__version__ = "0.1.0"
