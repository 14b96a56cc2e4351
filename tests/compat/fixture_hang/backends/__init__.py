"""Stands in for the runtime's package so cells of the fixture run a reaper too."""
