//! ttscm-company-sync.
