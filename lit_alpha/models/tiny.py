"""Builders of the embedded tiny models: a char-level tokenizer and a tiny tied-embedding Llama.

Shared by the pretraining of every embedded base (:mod:`lit_alpha.tasks.countdown.pretrain`,
:mod:`lit_alpha.tasks.strategy.pretrain`): each task passes its own alphabet.
"""

from __future__ import annotations

import torch

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"


def build_char_tokenizer(alphabet: str, model_max_length: int = 64):
    """A char-level ``PreTrainedTokenizerFast``: ``<pad> <bos> <eos> <unk>`` then one token per
    character of ``alphabet`` (in that order). ``<bos>`` is prepended when ``add_special_tokens=True``,
    no ``<eos>`` is appended; padding is on the left (decoder-only generation).

    Args:
        alphabet: every character prompts and answers use, each once.
        model_max_length: the tokenizer's ``model_max_length``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if len(set(alphabet)) != len(alphabet):
        raise ValueError(f"alphabet: repeated characters in {alphabet!r}")
    specials = [PAD, BOS, EOS, UNK]
    vocab = {t: i for i, t in enumerate(specials + list(alphabet))}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one char, one token
    core.decoder = decoders.Fuse()  # join tokens with no separator
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
    )


def build_tiny_llama(tok, hidden: int, layers: int, heads: int, max_positions: int, seed: int,
                     max_new_tokens: int = 32):
    """A tiny tied-embedding ``LlamaForCausalLM`` (intermediate size 4x hidden) whose special-token ids
    match ``tok``, initialised from ``torch.manual_seed(seed)``; sampling at T=1, top_p=1 by default.

    Args:
        tok: the tokenizer (:func:`build_char_tokenizer`).
        hidden: hidden size.
        layers: transformer layers.
        heads: attention heads (as many key/value heads).
        max_positions: ``max_position_embeddings``.
        seed: seeds the initial weights.
        max_new_tokens: the generation config's default ``max_new_tokens``.
    """
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
    )
    return model


def encode_batch(tok, prompts: list[str], attempts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``<bos> prompt attempt <eos>`` ids and labels (-100 except on attempt+eos).
    Returns ``ids, labels``: [B, T] long each."""
    p_ids = tok(prompts, add_special_tokens=True)["input_ids"]
    a_ids = tok(attempts, add_special_tokens=False)["input_ids"]
    seqs = [p + a + [tok.eos_token_id] for p, a in zip(p_ids, a_ids)]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, (p, s) in enumerate(zip(p_ids, seqs)):
        ids[i, : len(s)] = torch.tensor(s)
        labels[i, len(p) : len(s)] = torch.tensor(s[len(p) :])
    return ids, labels
