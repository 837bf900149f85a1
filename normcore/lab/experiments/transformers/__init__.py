"""The Transformers page's experiments: a tiny GPT at initialization (where the norm sits and
what it does to the gradients, Xiong et al. 2020) and in training (post-LN and warm-up).
UI-free: each returns tidy pandas frames and a sentence written from what it measured."""
