"""outreach: email check-ins with a school district's industry partners."""

__version__ = "0.1.0"
