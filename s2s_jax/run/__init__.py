"""What a workdir is and the entry points over it: the run config, the one `--set` parser, the workdir's
one writer and reader (a typed `Run`), and train / translate / evaluate."""
