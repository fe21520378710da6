"""A whole new method written outside the package, as a contributor would add one: a tiny query
head (mask classification) on a tiny conv backbone, its published-weight converters and its
registered variant with published weights and model-card tags. Importing this package registers
it; nothing in `segadapter/` knows it (tests/test_new_family.py runs it through everything)."""
from . import model, weights  # noqa: F401  (registration side effects)
