"""Raw cell results -> per-test statuses -> the ledger, and the why analysis."""
