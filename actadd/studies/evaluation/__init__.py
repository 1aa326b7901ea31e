"""The instruments of the studies: text and topic measures, statistics with their intervals,
and the scorers that load a model or train a classifier. Nothing here knows about a study."""
