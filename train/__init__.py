"""PyTorch training of SimCardioNet (installed as `edgeecg.train`; needs the `train` extra)."""
