__all__ = ["PartPresenceAlgorithm"]
