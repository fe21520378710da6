"""Class names and colour palettes of the supported datasets (facts about the datasets, kept as data).

Palettes are RGB triples indexed by class id. ADE20K and Cityscapes use the colours their
communities use (MMSegmentation / the Cityscapes scripts) so visualisations look familiar.
"""
from __future__ import annotations

Palette = list[tuple[int, int, int]]


def _hex_palette(text: str) -> Palette:
    """Parse whitespace-separated 'rrggbb' codes: compact to store, easy to diff."""
    return [(int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)) for h in text.split()]


def generated_palette(n: int) -> Palette:
    """A deterministic palette of `n` distinct colours (n <= 2**24), for datasets without one.

    Spreads the bits of the class id over the high bits of R, G and B (the PASCAL VOC scheme), so
    neighbouring ids get very different colours and id 0 is black; the first 256 colours are the
    same whatever `n` is.
    """
    if not 0 <= n <= 1 << 24:
        raise ValueError(f"generated_palette supports up to 2**24 classes, got {n}")
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for shift in range(7, -1, -1):  # bit k of the id -> bit (7 - k // 3) of one channel
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours.append((r, g, b))
    return colours


# --- CamVid, SegNet 11-class version (ids 0-10; 11 = void is mapped to ignore 255) ---
CAMVID_CLASSES = [
    "sky", "building", "pole", "road", "sidewalk", "tree", "sign/symbol", "fence", "car",
    "pedestrian", "bicyclist",
]
CAMVID_PALETTE: Palette = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
]
CAMVID_VOID_ID = 11

# --- ADE20K SceneParsing (150 classes after reduce_zero_label) ---
ADE20K_CLASSES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
]
ADE20K_PALETTE: Palette = _hex_palette("""
    787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 e005ff ebff07 96053d 787846
    08ff33 ff0652 8fff8c ccff04 ff3307 cc4603 0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 0907e6 dcdcdc
    ff095c 7009ff 08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 ffc207 ff7a08 00ff14
    ff0829 ff0599 0633ff eb0cff a09614 00a3ff 8c8c8c fa0a0f 14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff
    ff4700 00ebff 00adff 1f00ff 0bc8c8 ff5200 00fff5 003dff 00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00
    008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff ff00f5 ff0066 ffad00 ff0014
    ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 00ff52 000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900
    00ff0a ff7000 8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff 00d6ff ff0070
    5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3 ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff
    ff007a fff500 0abed4 d6ff00 00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff
    4700ff 7a00ff 00ffb8 005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff
""")

# --- Cityscapes (19 train ids) ---
CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
]
CITYSCAPES_PALETTE: Palette = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
]
# Official labelIds -> trainIds for the 19 evaluated classes; every other id is ignored (255).
CITYSCAPES_ID_TO_TRAINID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}

# --- COCO-Stuff 164k (171 train ids: 80 things then 91 stuff) ---
COCO_STUFF_CLASSES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge",
    "building-other", "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling-other",
    "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile",
    "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel",
    "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss",
    "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic",
    "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
    "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs",
    "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree",
    "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone",
    "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
]
# The palette MMSegmentation ships for COCO-Stuff repeats colours (e.g. person = bicycle), which
# makes visualisations ambiguous; a generated palette keeps all 171 distinct.
COCO_STUFF_PALETTE: Palette = generated_palette(len(COCO_STUFF_CLASSES))


# --- The open-vocabulary and SegViT benchmarks (../shared/spec/datasets.md) ---
# The long lists are kept as text files in classnames/, one name a line in id order, spelled as the
# official code registers them (SAN, detectron2, MaskFormer); synonym lists stay one name.
def _listed(stem: str) -> list[str]:
    from importlib.resources import files

    text = files(__package__).joinpath("classnames", f"{stem}.txt").read_text(encoding="utf-8")
    return text.splitlines()


VOC_CLASSES = _listed("voc20")  # SAN's VOC-20: no background; 'tv' where VOC says 'tvmonitor'
VOC21_CLASSES = ["background", *("tvmonitor" if n == "tv" else n for n in VOC_CLASSES)]  # mmseg / VOC
PCONTEXT59_CLASSES = _listed("pcontext59")  # SAN's; mmseg's PC-59 says 'table' for 'diningtable'
PCONTEXT60_CLASSES = ["background", *("table" if n == "diningtable" else n for n in PCONTEXT59_CLASSES)]
PCONTEXT459_CLASSES = _listed("pcontext459")  # alphabetical; label k = LabelMap value k + 1
ADE20K_FULL_CLASSES = _listed("ade847")  # trainId order of MaskFormer / SAN
ADE20K_DETECTRON2_CLASSES = _listed("ade150_detectron2")  # what SAN reads for ADE-150 (stripped)

# PASCAL's own colour scheme (the VOC colormap is `generated_palette`): background black, then the
# classes; the lists without background keep their classes' colours.
VOC21_PALETTE: Palette = generated_palette(21)
VOC_PALETTE: Palette = VOC21_PALETTE[1:]
PCONTEXT60_PALETTE: Palette = generated_palette(60)
PCONTEXT59_PALETTE: Palette = PCONTEXT60_PALETTE[1:]
PCONTEXT459_PALETTE: Palette = generated_palette(460)[1:]
ADE20K_FULL_PALETTE: Palette = generated_palette(848)[1:]
