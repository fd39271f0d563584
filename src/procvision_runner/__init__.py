"""ProcVision Runner: the station-side host of algorithm packages."""
