"""Memory, forgetting and unlearning in language models: a tutorial and reproduction suite

Modules:

- `unlearnkit.kvcache`: A memory-bounded KV cache for Hugging Face transformers, with eviction policies as small scoring classes: Full, Random, StreamingLLM, H2O, A2SF (Jo & Shin 2024), TOVA, Knorm and TRIM-KV (Bui et al. 2025).
- `unlearnkit.sort`: Sequence Order Recall Tasks (Pink et al. 2024): which of two passages of a book came first? Items, prompts, A/B scoring, retrieval, fine-tuning and statistics for in-context, no-context, in-memory and retrieval memory."""

__version__ = "0.0.1"
