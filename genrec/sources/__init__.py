"""Readers: every supported input layout -> canonical events (genrec.events) plus dead letters.

`layout.resolve` finds the files, `units.plan_units` checks their columns and cuts them into work
units, `units.read_unit` reads one unit, `titles.read_titles` reads title metadata.
"""
from genrec.sources.layout import SourceSpec, resolve
from genrec.sources.titles import read_titles
from genrec.sources.units import ReadUnit, UnitResult, plan_units, read_unit

__all__ = ["ReadUnit", "SourceSpec", "UnitResult", "plan_units", "read_titles", "read_unit", "resolve"]
