"""Inputs for a transformers model, derived from its class and config.

By the class's ``main_input_name``:

- ``input_ids``: token ids ``(B, T)`` in ``[0, vocab_size)``, ``T`` = ``--seq-len`` (default
  128) capped by the config's positions;
- ``pixel_values``: ``(B, num_channels, S, S)``, ``S`` = ``--input-size`` else ``image_size``;
- ``input_features`` (Whisper): ``(B, num_mel_bins, 2 * max_source_positions)``;
- ``input_values`` (wav2vec2-like raw audio): ``(B, --seq-len or 16000)``;

plus ``decoder_input_ids (B, T)`` for encoder-decoder models. Always a dict (keywords).
"""
from __future__ import annotations

from ..errors import HarnessError
from .common import randint, randn

DEFAULT_SEQ_LEN = 128
DEFAULT_AUDIO_SAMPLES = 16000
POSITION_FIELDS = ("max_position_embeddings", "n_positions", "max_target_positions")


def kind_of(cls, config) -> str:
    """causal-lm, seq2seq, speech-seq2seq, vision, audio or text, by class and config."""
    from transformers.models.auto import modeling_auto as ma

    def names(mapping) -> set:
        return {n for v in mapping.values() for n in ((v,) if isinstance(v, str) else v)}

    name = cls.__name__
    if name in names(ma.MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES):
        return "speech-seq2seq"
    if name in names(ma.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES) or getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    if name in names(ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return "causal-lm"
    main = getattr(cls, "main_input_name", "input_ids")
    return {"pixel_values": "vision", "input_features": "audio", "input_values": "audio"}.get(main, "text")


def _text_config(config):
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def seq_len(config, options, qualified: str, fields=POSITION_FIELDS) -> int:
    """``--seq-len`` (default 128, lowered to the model's positions); above the positions: an error."""
    text = _text_config(config)
    limit = next((getattr(text, f) for f in fields if isinstance(getattr(text, f, None), int)), None)
    if options.seq_len and limit and options.seq_len > limit:
        raise HarnessError(f"{qualified}: --seq-len {options.seq_len} exceeds the model's {limit} positions")
    return options.seq_len or min(DEFAULT_SEQ_LEN, limit or DEFAULT_SEQ_LEN)


def image_side(config, options) -> int:
    size = options.input_size or getattr(config, "image_size", None) or 224
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def input_maker(cls, config, options, qualified: str):
    """``make_inputs(batch_size, device) -> dict`` for this model (see the module docstring)."""
    main = getattr(cls, "main_input_name", "input_ids")
    vocab = getattr(_text_config(config), "vocab_size", None)
    decoder = bool(getattr(config, "is_encoder_decoder", False))
    if main == "input_ids" and not vocab:
        raise HarnessError(f"{qualified}: the config has no vocab_size to draw token ids from")
    if main == "input_features" and config.model_type != "whisper":
        raise HarnessError(f"{qualified}: audio features are made for Whisper only, not {config.model_type!r}")
    if main not in ("input_ids", "pixel_values", "input_features", "input_values"):
        raise HarnessError(f"{qualified}: inputs named {main!r} are not supported; use a scenario file")
    t = seq_len(config, options, qualified) if main == "input_ids" or decoder else 0
    side = image_side(config, options)

    def make_inputs(batch_size: int, device) -> dict:
        if main == "input_ids":
            out = {"input_ids": randint(vocab, (batch_size, t), device)}
        elif main == "pixel_values":
            out = {"pixel_values": randn((batch_size, getattr(config, "num_channels", 3), side, side), device)}
        elif main == "input_features":
            out = {"input_features": randn((batch_size, config.num_mel_bins, 2 * config.max_source_positions), device)}
        else:
            out = {"input_values": randn((batch_size, options.seq_len or DEFAULT_AUDIO_SAMPLES), device)}
        if decoder:
            out["decoder_input_ids"] = randint(vocab, (batch_size, t), device, seed=1)
        return out

    return make_inputs
