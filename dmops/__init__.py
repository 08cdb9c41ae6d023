"""dmops: direct-message campaigns over local files."""

__version__ = "0.1.0"
