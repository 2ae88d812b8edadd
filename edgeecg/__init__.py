"""edgeecg: SimCardioNet ECG-printout classification for edge devices.

The package root is the light runtime (numpy, OpenCV, ONNX Runtime). Training
(`edgeecg.train`) and export (`edgeecg.export`) need the `train`/`export` extras
and are only imported by the commands that use them, so importing `edgeecg`
never imports torch.
"""

__version__ = "0.1.0"
