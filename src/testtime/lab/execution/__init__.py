"""Running experiments: each unit of an LLM run (here or on Ray) or a diffusion run, stored as
it finishes; policies checked against the problems they were trained on."""
