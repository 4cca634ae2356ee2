"""The generic runs: each works for any source or destination the registry knows.

``load`` is one load run into a destination (``pending``: the rows it sends; ``sender``: how
they are packed, paced and sent; ``load_status``: what ``syncer status`` says of a
destination's models). The vendor packages never import this package: a destination type gives
its :class:`syncer.destinations.base.Destination`, and the run does the rest.
"""
