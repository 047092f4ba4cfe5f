"""Supply-chain provenance on the ledger: GS1 EPCIS 2.0 custody events signed by parties
(docs/supply.md)."""
