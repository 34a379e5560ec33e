"""The cascade engine: step loop, liquidation, backstop (insurance fund / vault), ADL, ledger."""
