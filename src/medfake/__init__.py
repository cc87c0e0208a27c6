"""medfake: synthesize, manipulate and detect deepfake medical images."""

__version__ = "0.1.0"
