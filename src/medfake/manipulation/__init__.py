"""Manipulation: RePaint / RePaint-DDIM lesion injection and removal on the class-conditional DDPM, and classical
baselines (copy-move, splice with alpha or Poisson blending, retouch), all through one crop → 128 px → paste-back
path that leaves every pixel outside the mask bit-identical. See docs/manipulation.md."""

from .api import (
    DEFAULT_FEATHER, DIFFUSION_METHODS, METHODS, ManipulationResult, copy_move, default_feather, manipulate,
    manipulate_slab, repaint, repaint_ddim, retouch, save_result, splice,
)
from .classical import poisson_blend
from .masks import (
    ManipulationError, feather_mask, make_mask, mask_bounds, mask_from_geometry, random_mask_geometry, slab_masks,
)
from .repaint import count_model_calls, jump_schedule, repaint_loop

__all__ = [
    "METHODS", "DIFFUSION_METHODS", "DEFAULT_FEATHER", "default_feather", "ManipulationResult", "ManipulationError",
    "make_mask", "feather_mask", "slab_masks",
    "mask_bounds", "mask_from_geometry", "random_mask_geometry", "manipulate", "manipulate_slab", "repaint",
    "repaint_ddim",
    "copy_move", "splice", "retouch", "save_result",
    "repaint_loop", "jump_schedule", "count_model_calls", "poisson_blend",
]
