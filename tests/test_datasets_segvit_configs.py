"""The SegViT configs of PASCAL Context and COCO-Stuff-10K carry the released recipes (the spec's
"SegViT evaluation protocol" table, written here from it)."""
import pytest

from segadapter.engine.config_loader import load_config

# name: (dataset, crop, scale, stride, weight decay, poly power)
RECIPES = {
    "segvit-l_pcontext60": ("pcontext60", (480, 480), (520, 520), (320, 320), 0.03, 1.0),
    "segvit-l_pcontext59": ("pcontext59", (480, 480), (520, 520), (320, 320), 0.03, 1.0),
    "segvit-l_coco-stuff10k": ("coco-stuff10k", (512, 512), (2048, 512), (341, 341), 0.02, 2.0),
}


@pytest.mark.parametrize("name", list(RECIPES))
def test_segvit_recipe(name):
    dataset, crop, scale, stride, wd, power = RECIPES[name]
    c = load_config(name)
    assert (c.model.name, c.data.dataset, c.data.crop_size, c.data.scale) == ("segvit-vit-l", dataset, crop, scale)
    assert (c.data.ratio_range, c.data.cat_max_ratio, c.data.batch_size) == ((0.5, 2.0), 0.75, 16)
    assert (c.eval.mode, c.eval.crop_size, c.eval.stride) == ("slide", crop, stride)
    assert (c.optim.lr, c.optim.weight_decay, c.optim.lr_mult, c.optim.grad_clip) == (pytest.approx(2e-5), wd,
                                                                                      {"head": 10.0}, 35.0)
    assert (c.schedule.max_iters, c.schedule.warmup_iters, c.schedule.power) == (80_000, 1500, power)
    assert c.data.transform_options == {"mean": [127.5] * 3, "std": [127.5] * 3}
    assert (c.train.eval_interval, c.train.checkpoint_interval) == (4000, 8000)
