"""The online feature view: a faust-streaming worker beside Spark (see ``worker``)."""
