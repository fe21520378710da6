"""Text side of open-vocabulary models: CLIP's tokenizer and prompt templates."""
from .tokenizer import ClipTokenizer

__all__ = ["ClipTokenizer"]
