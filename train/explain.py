"""Saliency maps: where in its input a model looks when it picks a class.

Two methods, chosen by what the model file allows:

* Grad-CAM (the `grad-cam` package) needs gradients, so it runs on a PyTorch
  checkpoint (a run folder or .pt), at a named SimCardioNet part.
* Occlusion runs on anything that returns probabilities, including the shipped
  ONNX models (FP32, FP16 or INT8, which cannot be turned back into a PyTorch
  graph with layer names): a white window slides over the input, and a pixel's
  saliency is the mean drop in the class probability while it is covered.
  White is the printout's paper, so covering means "erase the ink here".

Both give an S x S map in [0, 1] (0 = no influence) on the exact image the
runtime feeds the model (`edgeecg.preprocess.crop_and_resize`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from edgeecg.backends import OnnxRuntimeBackend, probabilities
from edgeecg.contract import ModelContract
from edgeecg.crop import NoGridFound
from edgeecg.errors import EdgeECGError
from edgeecg.formats import is_engine
from edgeecg.imageio import read_image
from edgeecg.preprocess import crop_and_resize, normalize
from edgeecg.registry import DEFAULT_IMAGE_MODEL, resolve_model

from .checkpoint import load_checkpoint, model_from_checkpoint
from .model import SimCardioNet
from .plots import save_figure

CAM_LAYERS = ("conv_block3", "conv_block2", "conv_block1", "attention", "trunk")
DEFAULT_LAYER = "conv_block3"
METHODS = ("auto", "gradcam", "occlusion")
PAPER_WHITE = 255  # fill for occluded or deleted pixels: blank printout paper
OCCLUSION_WINDOWS = 8  # the window is 1/8 of the input side ...
OCCLUSION_STRIDE = 2  # ... and moves by half a window


@dataclass
class ExplainModel:
    """A model plus the saliency method it supports; inputs are uint8 RGB crops (N x S x S x 3)."""

    contract: ModelContract
    source: str  # what the user named (file or run folder)
    method: str  # "gradcam" or "occlusion"
    layer: str | None  # Grad-CAM layer; None for occlusion
    _logits: Callable[[np.ndarray], np.ndarray]
    network: SimCardioNet | None = None

    @property
    def method_label(self) -> str:
        if self.method == "gradcam":
            return f"Grad-CAM at {self.layer}"
        window = occlusion_window(self.contract.input_size)
        return f"occlusion (probability drop under a {window} px white window; gradient-free)"

    def probabilities(self, rgb: np.ndarray, batch: int = 32) -> np.ndarray:
        """Calibrated class probabilities (the contract's temperature), as `edgeecg infer` reports them."""
        out = [self._logits(normalize(rgb[i:i + batch], self.contract.mean, self.contract.std))
               for i in range(0, len(rgb), batch)]
        return probabilities(np.concatenate(out), self.contract)

    def saliency(self, rgb: np.ndarray, targets: Sequence[int], coarse: bool = False) -> np.ndarray:
        """N x S x S maps in [0, 1] for class index `targets[i]` of image i.

        `coarse` moves occlusion windows by a whole window (64 model runs per
        image instead of 225), for many images; Grad-CAM ignores it.
        """
        if self.method == "gradcam":
            return grad_cam(self.network, self.contract, rgb, targets, self.layer)
        return np.stack([occlusion_saliency(self.probabilities, image, t, overlap=not coarse)
                         for image, t in zip(rgb, targets)])


def load_explain_model(model: str | None, method: str = "auto", layer: str | None = None) -> ExplainModel:
    """A run folder or .pt (Grad-CAM by default), an .onnx file or a shipped model name (occlusion).

    `model=None` means the shipped default model.
    """
    if method not in METHODS:
        raise EdgeECGError(f"unknown saliency method {method!r} (choose from {', '.join(METHODS)})")
    if layer is not None and layer not in CAM_LAYERS:
        raise EdgeECGError(f"unknown layer {layer!r} (choose from {', '.join(CAM_LAYERS)})")
    spec = DEFAULT_IMAGE_MODEL if model is None else str(model)
    path = Path(spec)
    if path.is_dir() or path.suffix == ".pt":
        network, contract = model_from_checkpoint(load_checkpoint(path), path)
        method = "gradcam" if method == "auto" else method
        if method == "occlusion" and layer is not None:
            raise EdgeECGError("--layer picks a Grad-CAM layer; occlusion has none")

        def logits(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return network(torch.from_numpy(batch)).numpy()

        cam_layer = (layer or DEFAULT_LAYER) if method == "gradcam" else None
        return ExplainModel(contract, str(path), method, cam_layer, logits, network)
    file = resolve_model(spec)
    if is_engine(file):
        raise EdgeECGError(f"{file}: explain runs ONNX models and PyTorch checkpoints, not TensorRT engines")
    if method == "gradcam" or layer is not None:
        raise EdgeECGError(f"{file}: Grad-CAM needs gradients, which an ONNX model cannot give; pass the run "
                           "folder or .pt checkpoint it was exported from, or use --method occlusion")
    backend = OnnxRuntimeBackend(file)
    return ExplainModel(backend.contract, str(file), "occlusion", None, backend.run)


def grad_cam(network: SimCardioNet, contract: ModelContract, rgb: np.ndarray, targets: Sequence[int],
             layer: str = DEFAULT_LAYER) -> np.ndarray:
    """Grad-CAM maps (N x S x S, each scaled to [0, 1]) of `layer` for the given class indices."""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise EdgeECGError("Grad-CAM needs the grad-cam package; install it with: pip install -e '.[train]' "
                           "(or use --method occlusion)") from None

    if layer not in CAM_LAYERS:
        raise EdgeECGError(f"unknown layer {layer!r} (choose from {', '.join(CAM_LAYERS)})")
    x = torch.from_numpy(normalize(rgb, contract.mean, contract.std))
    cam = GradCAM(model=network, target_layers=[getattr(network, layer)])
    try:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    finally:
        cam.activations_and_grads.release()  # remove the hooks: the network is used again
    return np.clip(maps.astype(np.float32), 0.0, 1.0)


def occlusion_window(size: int) -> int:
    return max(2, size // OCCLUSION_WINDOWS)


def occlusion_saliency(probs_fn: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray, target: int,
                       overlap: bool = True, batch: int = 32) -> np.ndarray:
    """S x S map in [0, 1]: mean drop of P(target) while a white window covers each pixel.

    With `overlap` the window moves by half its size, else by its whole size.
    """
    size = rgb.shape[0]
    window = occlusion_window(size)
    stride = max(1, window // OCCLUSION_STRIDE) if overlap else window
    starts = sorted(set(range(0, size - window + 1, stride)) | {size - window})
    corners = [(y, x) for y in starts for x in starts]
    base = float(probs_fn(rgb[None])[0, target])
    drop = np.zeros((size, size), np.float64)
    covered = np.zeros((size, size), np.float64)
    for first in range(0, len(corners), batch):
        chunk = corners[first:first + batch]
        occluded = np.repeat(rgb[None], len(chunk), axis=0)
        for image, (y, x) in zip(occluded, chunk):
            image[y:y + window, x:x + window] = PAPER_WHITE
        scores = base - probs_fn(occluded)[:, target]
        for score, (y, x) in zip(scores, chunk):
            drop[y:y + window, x:x + window] += score
            covered[y:y + window, x:x + window] += 1
    saliency = np.maximum(drop / covered, 0.0)
    peak = saliency.max()
    return (saliency / peak if peak > 0 else saliency).astype(np.float32)


def model_view(path: str | Path, contract: ModelContract, crop: bool | None = None) -> tuple[np.ndarray, str]:
    """(S x S x 3 uint8 RGB the model sees, a short name of that view) for an image file.

    `crop=None` follows the model's contract, as `edgeecg infer` does.
    """
    crop = contract.crop if crop is None else crop
    image = read_image(path)
    try:
        rgb, _ = crop_and_resize(image, contract.input_size, crop, contract.crop_margin)
    except NoGridFound:
        raise EdgeECGError(f"{path}: no ECG grid found (pass --no-crop to explain the whole image)") from None
    return rgb, "cropped trace" if crop else "whole image"


@dataclass
class Explanation:
    """One image's saliency for one class."""

    rgb: np.ndarray  # what the model saw, S x S x 3 uint8
    saliency: np.ndarray  # S x S in [0, 1]
    class_index: int
    probs: np.ndarray  # every class's probability
    chosen: bool  # True when the class was asked for, False when it is the prediction


def explain_image(model: ExplainModel, rgb: np.ndarray, class_name: str | None = None) -> Explanation:
    """Saliency of the predicted class, or of `class_name`, on one model-input image."""
    probs = model.probabilities(rgb[None])[0]
    if class_name is None:
        index = int(np.argmax(probs))
    elif class_name in model.contract.classes:
        index = model.contract.classes.index(class_name)
    else:
        raise EdgeECGError(f"unknown class {class_name!r}; the model knows {', '.join(model.contract.classes)}")
    saliency = model.saliency(rgb[None], [index])[0]
    return Explanation(rgb, saliency, index, probs, class_name is not None)


def plot_explanation(explanation: Explanation, model: ExplainModel, view: str, source: str,
                     path: str | Path) -> Path:
    """One PNG: model input | saliency map | overlay, titled with the class, its probability and the method."""
    classes = model.contract.classes
    index = explanation.class_index
    predicted = int(np.argmax(explanation.probs))
    title = f"{classes[index]}  p = {explanation.probs[index]:.3f}"
    if explanation.chosen:
        title += f"  (chosen; predicted {classes[predicted]} p = {explanation.probs[predicted]:.3f})"
    else:
        title += "  (predicted)"
    size = model.contract.input_size
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].imshow(explanation.rgb)
    axes[0].set_title(f"model input: {view}, {size} px", fontsize=9)
    axes[1].imshow(explanation.saliency, cmap="jet", vmin=0.0, vmax=1.0)
    flat = "\n(flat map: no region supports this class)" if explanation.saliency.max() == 0 else ""
    axes[1].set_title(model.method_label + flat, fontsize=9)
    axes[2].imshow(explanation.rgb)
    axes[2].imshow(explanation.saliency, cmap="jet", vmin=0.0, vmax=1.0, alpha=0.45)
    axes[2].set_title("overlay", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"{title}\n{Path(source).name} | model {model.source} | {model.method_label.split(' (')[0]}",
                 fontsize=10)
    return save_figure(fig, path)
