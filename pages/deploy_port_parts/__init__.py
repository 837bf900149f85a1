"""One module per tab of the Deploy & port page; each has ``render()``."""
