"""The model card `save_pretrained` writes beside the weights (`README.md`), so a folder can be
uploaded to the Hugging Face Hub as it is: the Hub's YAML metadata (library, tags, datasets, the
eval results of the run when known) and how to load and run the model."""
from __future__ import annotations

import json
from typing import Any

import yaml

from .registry import card_tags


def model_card(config: dict[str, Any]) -> str:
    name = config.get("name", "model")
    tags = ["segadapter", "image-segmentation", "semantic-segmentation"]
    tags += list(card_tags(name))  # the method's, registered with the variant
    meta: dict[str, Any] = {"library_name": "segadapter", "pipeline_tag": "image-segmentation", "tags": tags}
    dataset = config.get("dataset")
    if dataset:
        meta["datasets"] = [dataset]
    metrics = config.get("metrics") or {}
    scores = {k: v for k, v in metrics.items() if k in ("mIoU", "mAcc", "aAcc") and isinstance(v, (int, float))}
    if scores:
        meta["model-index"] = [{"name": name, "results": [{
            "task": {"type": "image-segmentation", "name": "Semantic Segmentation"},
            "dataset": {"type": dataset or "unknown", "name": dataset or "unknown",
                        "split": metrics.get("split", "val")},
            "metrics": [{"type": k.lower(), "name": k, "value": float(v)} for k, v in scores.items()],
        }]}]
    classes = config.get("classes")
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", f"# {name}", "",
             f"A [segadapter](https://pypi.org/project/segadapter/) `{name}` model predicting "
             f"{config.get('num_classes', '?')} classes"
             + (f" ({', '.join(map(str, classes[:12]))}{', ...' if len(classes) > 12 else ''})" if classes else "")
             + (f", trained on {dataset}" if dataset else "") + ".", ""]
    if scores:
        lines += ["| " + " | ".join(scores) + " |", "|" + "---|" * len(scores),
                  "| " + " | ".join(f"{v:.2f}" for v in scores.values()) + " |", ""]
    lines += ["```python", "import segadapter", "", 'model = segadapter.from_pretrained("hf-hub:ORG/NAME")  # this folder',
              'pred = segadapter.Inferencer(model)("image.png")  # .label: (H, W) class ids', "```", ""]
    precision = config.get("training_precision")
    if precision:
        lines += [f"Trained with amp {precision['amp']} -> {precision['dtype']}: {precision['reason']}.", ""]
    pre = config.get("preprocessing")
    if pre:
        lines += ["Preprocessing the model expects (applied by `Inferencer`, `predict` and `eval`):", "",
                  "```json", json.dumps(pre, indent=2), "```", ""]
    return "\n".join(lines)
