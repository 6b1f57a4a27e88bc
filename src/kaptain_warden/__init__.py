"""kaptain-warden: owner and TTL stamping, validation and cleanup for Kaptain SDK objects."""

__version__ = "0.1.0"
