"""What runs inside a cell, in any target's environment: standard library only.

``entry`` runs pytest, the target's reaper and a census; ``plugin`` streams
per-test events; ``protocol`` holds every name both sides of the cell
boundary use. The runner copies this package, and nothing else of compat,
into each cell; a test checks that it imports nothing outside the standard
library (and pytest, which the target's environment brings).
"""
