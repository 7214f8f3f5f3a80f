"""molting: port an assistant's persona into a small open model, and measure whether it survived.

The pipeline is one module per stage (see DESIGN.md): `preflight` (molt check), `train` (molt train),
`evaluate` (molt eval), `rubric` (molt score), `report` (molt report), and `pipeline` (molt run).
"""

__version__ = "0.1.0"
