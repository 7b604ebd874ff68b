"""``hf:ID_OR_PATH``: a transformers model built from its config alone, random weights.

The config comes from, in order: a local directory (``config.json``), the local Hugging
Face cache (offline: ``HF_HUB_OFFLINE=1`` for the call, ``local_files_only``), or a
transformers model type (``hf:llama``: that architecture's default config). Overrides
(``--model-kwargs``) are config fields. The class: the config's ``architectures[0]``,
else by model type: speech seq2seq, seq2seq LM, causal LM (types that are no masked LM),
image classification, else the base model (``AutoModel``).
"""
from __future__ import annotations

import copy
import fnmatch
from pathlib import Path

from ..core.text import first_line
from ..errors import HarnessError
from .common import NamedModel, build_error, offline, check_kwargs, disk_name, require, seeded, unknown
from .hf_inputs import input_maker, kind_of

DEFAULT_ORIGIN = "transformers' default"


def model_types() -> list[str]:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return sorted(CONFIG_MAPPING_NAMES)


def cached_ids() -> list[str]:
    """Model repositories in the local Hugging Face cache (usable offline)."""
    try:
        from huggingface_hub import scan_cache_dir

        return sorted(r.repo_id for r in scan_cache_dir().repos if r.repo_type == "model")
    except Exception:  # no cache directory yet
        return []


def list_models(pattern: str | None = None) -> list[str]:
    require("transformers", "hf")
    names = cached_ids() + model_types()
    return [n for n in names if not pattern or fnmatch.fnmatch(n, pattern)]


def load_config(ident: str, overrides: dict):
    """(config, where it came from) for a directory, a cached id or a model type; overrides applied."""
    transformers = require("transformers", "hf")
    qualified = f"hf:{ident}"
    with offline():
        base, origin = _base_config(transformers, ident, qualified)
    check_kwargs(qualified, overrides, [*base.to_dict(), *getattr(base, "attribute_map", {})])
    if not overrides:
        return base, origin
    # a model type's defaults are rebuilt from the overrides (derived fields such as head_dim
    # follow them); a saved config keeps its explicit fields and takes the overrides on top
    fields = {} if origin.startswith(DEFAULT_ORIGIN) else base.to_dict()
    try:
        return type(base)(**{**fields, **overrides}), origin
    except Exception as exc:
        raise build_error(qualified, exc) from exc


def _base_config(transformers, ident: str, qualified: str):
    """A local directory, else the local Hugging Face cache, else a model type's defaults."""
    path = Path(ident).expanduser()
    if path.is_dir():
        try:
            return transformers.AutoConfig.from_pretrained(str(path), local_files_only=True), str(path)
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{qualified}: {path} holds no readable transformers config.json "
                               f"({first_line(exc)[:200]})") from None
    try:
        return transformers.AutoConfig.from_pretrained(ident, local_files_only=True), "the local Hugging Face cache"
    except (OSError, ValueError):
        pass
    if ident in model_types():
        return transformers.AutoConfig.for_model(ident), f"{DEFAULT_ORIGIN} {ident} config"
    if "/" in ident:
        raise HarnessError(f"{qualified}: no such directory, and {ident!r} is not in the local Hugging Face cache "
                           "(nothing is downloaded); give a directory holding config.json, or a model type (`python -m harness list hf`)")
    raise unknown("hf model", ident, model_types(),
                  "not a local directory with config.json, not in the local Hugging Face cache "
                  "(nothing is downloaded), not a transformers model type; `python -m harness list hf`")


def model_class(config):
    """The class to build: ``architectures[0]`` when transformers has it, else by model type."""
    import transformers
    from transformers.models.auto import modeling_auto as ma

    for arch in config.architectures or []:
        if hasattr(transformers, arch):
            return getattr(transformers, arch)
    t = config.model_type
    order = [(ma.MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES, transformers.AutoModelForSpeechSeq2Seq),
             (ma.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES, transformers.AutoModelForSeq2SeqLM),
             ({k: v for k, v in ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items() if k not in ma.MODEL_FOR_MASKED_LM_MAPPING_NAMES},
              transformers.AutoModelForCausalLM),
             (ma.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES, transformers.AutoModelForImageClassification)]
    auto = next((cls for names, cls in order if t in names), transformers.AutoModel)
    try:
        return auto._model_mapping[type(config)]
    except KeyError:
        raise HarnessError(f"hf: transformers has no model class for model type {t!r}") from None


def load(ident: str, options) -> NamedModel:
    qualified = f"hf:{ident}"
    config, origin = load_config(ident, options.model_kwargs)
    cls = model_class(config)
    kind = kind_of(cls, config)
    make_inputs = input_maker(cls, config, options, qualified)
    attn = {"attn_implementation": options.attn_implementation} if options.attn_implementation else {}

    def build():
        import torch

        try:
            with offline():
                if options.weights:
                    return cls.from_pretrained(ident, config=copy.deepcopy(config), local_files_only=True,
                                               dtype=torch.float32, **attn)
                return cls._from_config(copy.deepcopy(config), dtype=torch.float32, **attn)
        except OSError as exc:
            raise HarnessError(f"{qualified}: --weights found no weights on disk for it (nothing is downloaded; "
                               f"run without --weights for random weights): {first_line(exc)[:200]}") from None
        except Exception as exc:
            raise build_error(qualified, exc) from exc

    if options.weights and origin.startswith(DEFAULT_ORIGIN):
        raise HarnessError(f"{qualified}: a model type has no weights; --weights needs a directory or a cached model id")
    return NamedModel(name=disk_name("hf", ident), description=f"transformers {cls.__name__} ({kind}) from {origin}, "
                      f"{'weights from disk' if options.weights else 'random weights'}", path=None,
                      build_model=seeded(build), make_inputs=make_inputs, qualified=qualified, source="hf", kind=kind)
