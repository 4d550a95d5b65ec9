"""The model: the only door to torch, transformers and peft.

adapters     backbone + PEFT adapter (LoRA, QLoRA, IA3), the flat adapter vector and its spec
adapter_layers  ``model.adapter_layers``: which layers carry the adapter (all or the top N)
prefix_cache the top-N suffix view and the frozen prefix's activations, computed once
training     encoding examples, the local training loop (DP-SGD through ``privacy.dp_sgd``)
evaluation   metrics of one adapter on every client's test split and the pooled test set
option_rows  multiple choice as one row per option: layout and scores
prompts      a causal LM's prompt in its chat template
embedded     backbones shipped in PyPI packages (a GGUF file converted once into a cache)

May import: ``privacy`` (types and DP-SGD), ``tasks``, ``config``, ``errors``.
Exports nothing here: importing torch takes seconds, so callers import the submodule they need
and a light command (``securefed audit``, a protocol-only Flower call) never loads it.
"""
