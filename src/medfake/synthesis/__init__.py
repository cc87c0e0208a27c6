"""Synthesis: class-conditional DDPM (DDPM/DDIM samplers, classifier-free guidance) and a conditional DCGAN."""

from .generate import Generator, load_generator, synthesize

__all__ = ["Generator", "load_generator", "synthesize"]
