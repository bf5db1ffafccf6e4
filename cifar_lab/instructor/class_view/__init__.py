"""The class at a glance, after grading: similar solutions across the class, and the class report.

Read in order: :mod:`.fingerprints` (an exercise cell as normalised, winnowed
k-gram hashes), :mod:`.similarity` (pairs of students per exercise, through an
index of those hashes), :mod:`.sources` (the exercise cells of a submissions
folder and the course's stubs and model answers), :mod:`.report`
(``class_report.html`` and ``class_report.csv``).
"""
