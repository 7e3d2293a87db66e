"""Memory, forgetting and unlearning in language models: a tutorial and reproduction suite

Modules:

- `unlearnkit.kvcache`: A memory-bounded KV cache for Hugging Face transformers, with eviction policies as small scoring classes: Full, Random, StreamingLLM, H2O, A2SF (Jo & Shin 2024), TOVA and Knorm. TRIM-KV's learned policy lives in `unlearnkit.trimkv`, the associative-recall experiment in `unlearnkit.kvrecall`.
- `unlearnkit.kvrecall`: The `kvcache` reproduction's experiment: a multi-query associative-recall task where the KV cache matters, per-item accuracy and agreement under a budget, the parameter check, the claims of A2SF and TRIM-KV decided by paired tests, and the plots.
- `unlearnkit.sort`: Sequence Order Recall Tasks (Pink et al. 2024): which of two passages of a book came first? Items, prompts, A/B scoring, retrieval, fine-tuning and statistics for in-context, no-context, in-memory and retrieval memory.
- `unlearnkit.trimkv`: TRIM-KV (Bui et al. 2025, arXiv 2512.03324): learned retention gates, the retention-decayed attention they are trained through, the capacity penalty, and the eviction policy that uses them."""

__version__ = "0.0.1"
