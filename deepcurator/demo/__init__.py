"""The offline demo: the synthetic corpus, the pipeline that runs every stage on it, and the helper
that runs a server process."""
