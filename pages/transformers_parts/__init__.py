"""One module per tab of the Transformers page; each has ``render()``."""
