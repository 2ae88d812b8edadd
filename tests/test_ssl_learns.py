"""SimCLR pretraining learns where instance discrimination is possible (issue 18).

A tiny renderer-made set: 32 synthetic records, each drawn as a printout of its own random style
(layout, grid, paper, header), 64 px. Two views of a page crop the whole page with a small shift and
rescale, the second rotated up to 5 degrees; no colour jitter or blur. After 30 SSL epochs (60 steps) the network
must beat the same network at its random init on both diagnostics: the embedding spread of the clean
pages, and a linear probe that tells which page an augmented view comes from, fitted on four views of
every page and scored on four other views (chance 1/32). Both networks' BatchNorm statistics are
re-estimated on the pages first, so the comparison is of weights, not of running statistics.

The assertions fail for an SSL run that learns nothing: with the paper's views (independent crops
down to 10 % of the page, heavy colour jitter, blur) the same run collapses (spread falls below the
init's, the probe stays at chance).
"""

from __future__ import annotations

import random

import cv2
import numpy as np
import torch
from PIL import Image

from edgeecg.contract import IMAGENET_MEAN, IMAGENET_STD
from edgeecg.render import random_options, render_printout
from edgeecg.synthetic import synthetic_ecg
from edgeecg.train.augment import ssl_views
from edgeecg.train.config import WHOLE_PAGE_SSL, preset_config
from edgeecg.train.modality import model_config
from edgeecg.train.model import build_model
from edgeecg.train.ssl import pretrain
from edgeecg.train.ssl_probe import NoProgress, embed, probe_accuracy, recalibrate_batchnorm, spread_of

PAGES, SIZE = 32, 64


def rendered_pages() -> np.ndarray:
    """PAGES x SIZE x SIZE x 3 uint8 RGB printouts, each of its own record and style."""
    pages = []
    for i in range(PAGES):
        page = render_printout(synthetic_ecg(i, fs=100.0), 100.0, random_options(i, px_per_mm=1.5), seed=i).image
        pages.append(cv2.resize(page[:, :, ::-1], (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    return np.stack(pages)


@torch.no_grad()
def view_features(model, pages: np.ndarray, cfg, rounds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features of `rounds` x 2 augmented views of every page (the SSL view pair), and page ids."""
    views = ssl_views(cfg.ssl_views, cfg.input_size, IMAGENET_MEAN, IMAGENET_STD, cfg.ssl_min_scale,
                      cfg.ssl_jitter, cfg.ssl_colour, cfg.ssl_blur)
    random.seed(seed)
    torch.manual_seed(seed)
    x, y = [], []
    for _ in range(rounds):
        for i, page in enumerate(pages):
            image = Image.fromarray(page)
            x.extend(views(image) if callable(views) else (views[0](image), views[1](image)))
            y.extend([i, i])
    model.eval()
    return model.features(torch.stack(x)).numpy(), np.array(y)


def diagnostics(model, pages: np.ndarray, cfg) -> tuple[float, float]:
    """(embedding spread of the clean pages, held-out-view probe accuracy) after re-estimating BatchNorm."""
    device = torch.device("cpu")
    recalibrate_batchnorm(model, pages, device)
    _, projections = embed(model, pages, device)
    train_x, train_y = view_features(model, pages, cfg, 2, seed=1)
    test_x, test_y = view_features(model, pages, cfg, 2, seed=2)
    return spread_of(projections), probe_accuracy(train_x, train_y, test_x, test_y)


def test_simclr_learns_instance_discrimination_on_rendered_pages(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_and_check(tmp_path)
    finally:
        torch.set_num_threads(threads)


def run_and_check(tmp_path):
    pages = rendered_pages()
    cfg = preset_config("tiny", trunk="resnet18", pretrained=False, input_size=SIZE, ssl_batch=16, ssl_epochs=30,
                        **WHOLE_PAGE_SSL)
    torch.manual_seed(0)
    model = build_model(model_config(cfg, 2))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    spread_init, probe_init = diagnostics(model, pages, cfg)
    model.load_state_dict(start)

    history, _ = pretrain(model, pages, cfg, torch.device("cpu"), tmp_path / "ssl.pt", lambda line: None,
                          NoProgress())
    spread_ssl, probe_ssl = diagnostics(model, pages, cfg)

    collapsed = np.log(2 * cfg.ssl_batch - 1)
    late_loss = np.mean([h["loss"] for h in history[-5:]])
    seen = dict(late_loss=late_loss, collapsed=collapsed, spread=(spread_init, spread_ssl), probe=(probe_init, probe_ssl))
    assert late_loss < collapsed - 0.1, seen
    assert spread_ssl > spread_init + 0.03, seen
    assert probe_ssl > probe_init + 0.05 and probe_ssl > 3 / PAGES, seen


def test_drawing_pairs_take_the_two_views_from_two_drawings_of_one_record():
    """Each SimCLR pair comes from two different drawings of the same record; a scan given as copies of
    one page gets two views of that page."""
    from edgeecg.train.ssl import DrawingPairs

    records, drawings_per_record = 4, 3
    drawings = np.zeros((records, drawings_per_record, 16, 16, 3), np.uint8)
    for r in range(records):
        for d in range(drawings_per_record):
            drawings[r, d] = 10 * r + d  # the pixel value names (record, drawing)
    ids = (lambda image: int(np.asarray(image)[0, 0, 0]),) * 2
    random.seed(0)
    pairs = [DrawingPairs(drawings, ids)[r][0] for r in range(records) for _ in range(20)]
    assert all(a // 10 == b // 10 and a != b for a, b in pairs)  # same record, other drawing
    assert {a % 10 for a, _ in pairs} == set(range(drawings_per_record))

    scans = np.repeat(drawings[:, :1], 2, axis=1)
    assert all(a == b for a, b in (DrawingPairs(scans, ids)[r][0] for r in range(records)))
    paired = ssl_views("paired", 16, IMAGENET_MEAN, IMAGENET_STD, 1.0, 0.05, 0.0, 0.0)
    v0, v1 = DrawingPairs(drawings, paired)[0][0]
    assert v0.shape == v1.shape == (3, 16, 16)
