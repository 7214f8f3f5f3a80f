"""The persona card and the evaluation suite: who the persona is, and what a right answer must say.

`persona.yaml` and `suite.yaml` are read here (`load_persona`, `load_suite`); the probe questions generated
from the card and the detection of forbidden claims live beside them, since the preflight, the augmenter
and the scorer all read the card through this package.
"""
