"""Applying a converted state dict to a model strictly, and the report of what was loaded."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...errors import CheckpointError


@dataclass
class LoadReport:
    source: str
    layout: str = "segadapter"
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)  # parameters left freshly initialised
    ignored: dict[str, str] = field(default_factory=dict)  # checkpoint tensors not used -> why
    notes: list[str] = field(default_factory=list)  # what was adapted (e.g. resampled position embeddings)

    def __str__(self) -> str:
        # backbone parts are named one level deeper (e.g. backbone.out_norms)
        groups = sorted({".".join(k.split(".")[:2 if k.startswith("backbone.") else 1]) for k in self.fresh})
        msg = f"loaded {len(self.loaded)} tensors from {self.source} ({self.layout} layout)"
        if self.fresh:
            msg += f"; freshly initialised: {len(self.fresh)} tensors in {', '.join(groups)}"
        if self.ignored:
            reasons = sorted(set(self.ignored.values()))
            msg += (f"; not used from the checkpoint: {len(self.ignored)} tensors ({shorten(list(self.ignored), 3)}: "
                    + "; ".join(reasons) + ")")
        for note in self.notes:
            msg += f"; {note}"
        return msg


def apply_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                     layout: str = "segadapter", optional_prefixes: tuple[str, ...] = ()) -> LoadReport:
    """Copy `state` into `model`. Every key must exist with the right shape; every model key must
    be provided unless it starts with one of `optional_prefixes` (reported as fresh)."""
    own = model.state_dict()
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)
    )
    missing = sorted(k for k in own if k not in state and not k.startswith(optional_prefixes)
                     and not k.endswith("num_batches_tracked"))
    if unexpected or mismatched or missing:
        lines = [f"{source}: weights ({layout} layout) do not fit {model.config.get('name', type(model).__name__)}"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                shown = items[:10] + ([f"... {len(items) - 10} more"] if len(items) > 10 else [])
                lines.append(f"  {title} ({len(items)}): " + ", ".join(shown))
        raise CheckpointError("\n".join(lines))
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(own[k].dtype))
    fresh = sorted(k for k in own if k not in state)
    return LoadReport(source=source, layout=layout, loaded=sorted(state), fresh=fresh)


def shorten(items: list[str], n: int) -> str:
    return ", ".join(items[:n]) + (f", ... {len(items) - n} more" if len(items) > n else "")
