"""Model families, one file each; importing this package registers every variant."""
from . import convnext, san, segdeformer, segformer, segvit  # noqa: F401  (registration side effects)
