"""Pure model builders: structure in, ``pm.Model`` out, with all per-fit values as ``pm.Data``."""
