"""dnnbench: which pretrained vision model to deploy on this hardware, measured on it."""

__version__ = "0.1.0"
