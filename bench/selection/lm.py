"""A trained curate GPT seen through the interface of ``curate.pplcorr.lossmatrix``, so that the
ppl-matrix code (windows, per-text NLL, bits per byte) scores our own checkpoints unchanged."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from curate.core import CurateError


class CurateTokenizer:
    """The ``tokenizer(text, add_special_tokens=False)["input_ids"]`` call lossmatrix makes;
    the end-of-text token (id 0) leads every text, as in training."""

    bos_token_id = None

    def __init__(self, tokenizer, eos_id: int):
        self.tokenizer, self.eos_token_id = tokenizer, eos_id

    def __call__(self, text: str, add_special_tokens: bool = False, verbose: bool = False) -> dict:
        return {"input_ids": self.tokenizer.encode(text).ids}


def causal_lm(gpt):
    """Wrap a :class:`curate.train.model.GPT` so ``model(input_ids=…).logits`` works (right padding
    needs no mask: the attention is causal)."""
    import torch

    class CurateCausalLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gpt = gpt

        def forward(self, input_ids, attention_mask=None):
            return SimpleNamespace(logits=self.gpt(input_ids))

    return CurateCausalLM().eval()


def resolve_device(device: str) -> str:
    """``auto`` → CUDA when present, else the CPU (as `curate train`)."""
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def load_run(run_dir: Path, tokenizer_path: Path, device: str = "cpu"):
    """(model, tokenizer, context) of the latest checkpoint of a `curate train` run."""
    from safetensors.torch import load_model

    from curate.integrity import load_tokenizer, verify_file
    from curate.train.config import ModelConfig
    from curate.train.loop import latest_checkpoint, read_meta
    from curate.train.model import GPT

    checkpoint = latest_checkpoint(Path(run_dir) / "checkpoints")
    if checkpoint is None:
        raise CurateError(f"{run_dir}: no finished checkpoint")
    config = ModelConfig(**read_meta(checkpoint)["model"])
    gpt = GPT(config)
    weights = Path(checkpoint) / "model.safetensors"
    verify_file(weights, what="model weights")
    load_model(gpt, str(weights), device="cpu")
    tok = load_tokenizer(tokenizer_path)
    return causal_lm(gpt.to(resolve_device(device))), CurateTokenizer(tok, eos_id=0), config.context


def text_bits(run_dir: Path, tokenizer_path: Path, texts: list[str],
              batch_size: int = 32, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Per text: (bits per byte, scored tokens) under the run's model, by the ppl-matrix code."""
    from curate.pplcorr.lossmatrix import bits_per_byte, text_losses, utf8_bytes

    model, tokenizer, context = load_run(run_dir, tokenizer_path, device)
    nll, tokens = text_losses(model, tokenizer, texts, max_length=context, batch_size=batch_size)
    return bits_per_byte(nll, utf8_bytes(texts)), tokens


def corpus_bpb(run_dir: Path, tokenizer_path: Path, texts: list[str], device: str = "cpu") -> float:
    """Bits per byte of ``texts`` taken together (Σ bits / Σ bytes)."""
    from curate.pplcorr.lossmatrix import utf8_bytes

    bpb, _ = text_bits(run_dir, tokenizer_path, texts, device=device)
    n_bytes = utf8_bytes(texts)
    return float((bpb * n_bytes).sum() / n_bytes.sum())
