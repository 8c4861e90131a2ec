"""PortraitCraft evaluation: official Track 1 / Track 2 scoring, judge calibration, region-aware fidelity.

- track1.py: SRCC, PLCC, level and QA accuracy, composite (`composite_score`).
- track2.py: the judge over a set of images; AutoScore and FinalScore (`auto_score`, `final_score`).
- calibration.py: judge vs human agreement. (Edit drift by region, `eval fidelity`: portraitcraft.tools.fidelity.)
"""
