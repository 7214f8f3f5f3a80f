"""Reports: the run record (the one reader of a run directory), report.md, report.html, run comparison
with a regression verdict, and the local dashboard (`molt report`, `molt compare`, `molt serve`)."""
