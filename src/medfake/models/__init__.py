"""Model registry, model cards and strict safetensors weights."""

from .cards import card_path, list_cards, load_model, read_card, write_card
from .registry import create, entry, make_config, names, register
from .weights import WeightsMismatchError, load_weights, save_weights

__all__ = [
    "card_path", "list_cards", "load_model", "read_card", "write_card", "create", "entry", "make_config", "names",
    "register", "WeightsMismatchError", "load_weights", "save_weights",
]
