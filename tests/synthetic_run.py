"""The tiny training config the engine tests share: a model on the built-in synthetic dataset
(40x40 images, 32x32 crops, batch 2), CPU, no progress bar."""
from segadapter.engine.config import config_from_dict


def synthetic_config(model: str = "segformer-b0", max_iters: int = 40, warmup_iters: int = 5, samples: int = 6,
                     val_samples: int = 2, **train):
    return config_from_dict({
        "model": {"name": model},
        "data": {"dataset": "synthetic", "crop_size": 32, "scale": None, "batch_size": 2, "num_workers": 0,
                 "options": {"size": 40, "num_samples": samples}, "val_options": {"num_samples": val_samples}},
        "optim": {"lr": 1e-3},
        "schedule": {"max_iters": max_iters, "warmup_iters": warmup_iters},
        "train": {"progress": False, "device": "cpu", **train},
    })
