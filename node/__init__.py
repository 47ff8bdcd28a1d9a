"""The priest: the Synod protocol of The Part-Time Parliament over UDP, with a durable ledger."""

__version__ = "0.1.0"
