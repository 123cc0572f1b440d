"""One module per UI tab; each exposes ``create_<tab>_tab(demo, client, ...)``."""
