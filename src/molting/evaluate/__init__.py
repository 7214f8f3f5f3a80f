"""Evaluation: generate answers (locally or from a server), score them with rubric v2, the judge, log-prob
probes and embedding similarity, human scores, and the statistics behind every interval (`molt eval`,
`molt score`, `molt probe`, `molt scores …`)."""
