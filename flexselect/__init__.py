"""FlexSelect model math: adapters, reference-layer ranking, selection and answering (no I/O)."""
